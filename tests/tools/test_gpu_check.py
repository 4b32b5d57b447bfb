"""The GPU script on the CPU: its dry run (every step with tiny settings, so a mistake shows
here, not on the borrowed machine), and with fake commands in place of its steps: a hang, a
SIGTERM to the script itself, a second attempt into the same --out."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest

import tools.gpu_check as gpu_check
from tests.helpers import ROOT, process_alive
from tools.gpu_check import get_args_parser, main

# The steps in the order of what their figures are worth.
STEPS = ["gpu_repro_a", "gpu_repro_b", "drift_gpu_repro", "probe_gpu_repeat", "cpu_repro",
         "drift_cpu_vs_gpu", "probe_cpu_vs_gpu", "golden_gpu", "gpu_ordinary_a", "gpu_ordinary_b",
         "drift_gpu_ordinary", "benchmark", "pytest_cuda"]
PY = sys.executable
HANG = (PY, "-c", "import time; time.sleep(60)")
PASS = (PY, "-c", "pass")
FIXTURE_RUN = ROOT / "tests" / "data" / "run_before_plan"
BUILD_STEPS = gpu_check.build_steps


def _with_commands(monkeypatch, replace):
    """gpu_check's own steps (names, order, needs, folders), each command swapped by
    ``replace(step)``: a Step, or None to keep it."""
    def fake(settings, attempt):
        return [replace(step) or step for step in BUILD_STEPS(settings, attempt)]

    monkeypatch.setattr(gpu_check, "build_steps", fake)


def _args(out, *extra):
    return get_args_parser().parse_args(["--dry-run", "--out", str(out), *extra])


def _check(out, *extra) -> tuple[int, str]:
    """gpu_check's exit status and the summary.md of its attempt (the latest under ``out``)."""
    code = main(_args(out, *extra))
    latest = max(out.glob("attempt*"), key=lambda p: int(p.name[len("attempt"):]))
    return code, (latest / "summary.md").read_text()


def _status(text: str, step: str) -> str:
    row = next(line for line in text.splitlines() if line.startswith(f"| {step} |"))
    return row.split(" | ")[1]


@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_the_summary(tmp_path):
    code, text = _check(tmp_path)
    assert code == 0
    for step in STEPS:
        assert f"| {step} | ok |" in text, step
    table = text.split("## Steps")[1].split("## Machine")[0]
    assert [line.split(" | ")[0][2:] for line in table.splitlines()[4:] if line] == STEPS
    assert "Complete: 13 of 13 steps succeeded" in text
    assert "- **gpu_repro** (gpu_repro_a vs gpu_repro_b): identical to the last bit " \
           "through epoch 1" in text
    assert "- **cpu_vs_gpu** (cpu_repro vs gpu_repro_a):" in text
    assert "## Probe: the GPU against itself" in text and "## Probe: CPU against GPU" in text
    # Each probe's section, and the CPU-vs-GPU paragraph's first differing layer.
    assert text.count("every layer matched") == 3
    assert "## Same start?" in text and "- yes: initial weights: gpu_repro_a " in text
    assert "- first differing layer (one pass of the GPU run's last checkpoint): every layer " \
           "matched" in text
    assert "## Golden record" in text and "- this machine:" in text
    # Checked against the committed records, which the attempt's copy keeps beside its own.
    kept = json.loads((tmp_path / "attempt1" / "golden.json").read_text())["records"]
    committed = json.loads((ROOT / "tests" / "golden" / "portable.json").read_text())["records"]
    assert {(r["key"], r["mode"]) for r in committed} <= {(r["key"], r["mode"]) for r in kept}
    assert len(kept) >= len(committed)
    assert text.count("| micro | 64 |") == 3  # repro fp32, fp32, amp rows
    assert (tmp_path / "attempt1" / "runs" / "gpu_repro_a" / "results.txt").is_file()


def test_a_hung_step_is_stopped_and_the_next_ones_run_or_say_why(tmp_path, monkeypatch):
    _with_commands(monkeypatch, lambda step: dataclasses.replace(
        step, command=HANG, limit=1) if step.name == "gpu_repro_a" else
        dataclasses.replace(step, command=PASS))
    start = time.monotonic()
    code, text = _check(tmp_path)
    assert time.monotonic() - start < 60
    assert _status(text, "gpu_repro_a") == "timed out: limit 1 s; stopped with SIGTERM"
    for step in ("drift_gpu_repro", "probe_gpu_repeat", "drift_cpu_vs_gpu", "probe_cpu_vs_gpu"):
        assert _status(text, step).startswith("skipped: needs gpu_repro_a, which timed out"), step
    for step in ("gpu_repro_b", "cpu_repro", "gpu_ordinary_a", "gpu_ordinary_b",
                 "drift_gpu_ordinary", "benchmark", "pytest_cuda"):
        assert _status(text, step) == "ok", step
    # Issue 8: a step that timed out is no "Complete", nor exit status 0.
    assert code == 1 and "Complete" not in text
    assert "8 of 13 steps succeeded (0 failed, 1 timed out, 4 skipped)" in text


def test_a_spent_budget_skips_the_remaining_steps_with_the_reason(tmp_path, monkeypatch):
    # expected=0: steps that would fit, so that the hung one is started and cut at the budget
    # (a step that would not fit is skipped before it starts: the test below).
    _with_commands(monkeypatch, lambda step: dataclasses.replace(
        step, command=HANG, expected=0) if step.name == "gpu_repro_a" else
        dataclasses.replace(step, command=PASS, expected=0))
    code, text = _check(tmp_path, "--budget", "8")
    assert _status(text, "gpu_repro_a").startswith("timed out: limit ")
    assert "(what was left of the budget)" in _status(text, "gpu_repro_a")
    for step in ("gpu_repro_b", "cpu_repro", "benchmark", "pytest_cuda"):
        assert _status(text, step).startswith("skipped: budget spent ("), step
    # Issue 8: its one step timed out, the rest skipped: exit 0 and "Complete" before.
    assert code == 1 and "Complete" not in text
    assert "0 of 13 steps succeeded (0 failed, 1 timed out, 12 skipped)" in text


def test_every_step_succeeding_is_complete_and_exits_0(tmp_path, monkeypatch, capsys):
    _with_commands(monkeypatch, lambda step: dataclasses.replace(step, command=PASS))
    code, text = _check(tmp_path)
    assert code == 0 and "Complete: 13 of 13 steps succeeded" in text
    assert "13 of 13 steps succeeded" in capsys.readouterr().out


def test_no_step_run_is_no_success(tmp_path, monkeypatch):
    """A budget too short to start any step: nothing failed, and nothing was checked."""
    _with_commands(monkeypatch, lambda step: dataclasses.replace(step, command=PASS))
    code, text = _check(tmp_path, "--budget", "1")
    assert code == 1 and "0 of 13 steps succeeded (0 failed, 0 timed out, 13 skipped)" in text


@pytest.mark.parametrize("argv, message", [
    (["--budget", "-5"], "--budget must be a number of seconds above 0, got -5"),
    (["--budget", "0"], "--budget must be a number of seconds above 0, got 0"),
    (["--budget", "nan"], "--budget must be a number of seconds above 0, got nan"),
    (["--epochs", "0"], "--epochs must be 1 or more, got 0"),
])
def test_options_out_of_range_are_refused(tmp_path, monkeypatch, capsys, argv, message):
    _with_commands(monkeypatch, lambda step: dataclasses.replace(step, command=PASS))
    assert main(_args(tmp_path, *argv)) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("attempt*")), "nothing is run for a refused option"


def _train_commands(monkeypatch) -> list[tuple[str, ...]]:
    """The training commands gpu_check builds (run as PASS)."""
    seen = []

    def keep(step):
        if step.command[1] == "train.py":
            seen.append(step.command)
        return dataclasses.replace(step, command=PASS)

    _with_commands(monkeypatch, keep)
    return seen


@pytest.mark.parametrize("argv, epochs", [([], "2"), (["--epochs", "7"], "7")],
                         ids=["default", "given"])
def test_dry_run_honours_epochs(tmp_path, monkeypatch, argv, epochs):
    """Issue 18: --dry-run --epochs 7 trained 2, the option silently replaced."""
    commands = _train_commands(monkeypatch)
    assert _check(tmp_path, *argv)[0] == 0
    assert len(commands) == 5
    for command in commands:
        flags = [command[i + 1] for i, c in enumerate(command) if c == "--epochs"]
        assert flags == [epochs], command


def test_sigterm_to_the_script_leaves_a_complete_summary(tmp_path):
    pid_file = tmp_path / "child.pid"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import dataclasses, sys
        import tools.gpu_check as gpu_check
        build_steps = gpu_check.build_steps
        sleep = "import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); " \\
                "time.sleep(60)"
        gpu_check.build_steps = lambda settings, attempt: [
            dataclasses.replace(s, command=(sys.executable, "-c", sleep), limit=120)
            for s in build_steps(settings, attempt)]
        sys.exit(gpu_check.main(gpu_check.get_args_parser().parse_args(sys.argv[1:])))
        """))
    out, bundle = tmp_path / "out", tmp_path / "bundle"
    proc = subprocess.Popen([PY, str(driver), "--dry-run", "--out", str(out), "--bundle",
                             str(bundle)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = _sigterm_once(proc, lambda: pid_file.is_file() and pid_file.read_text(),
                           "the first step never started")
    assert proc.returncode == 128 + signal.SIGTERM, output
    text = (out / "attempt1" / "summary.md").read_text()
    assert "Stopped by a signal" in text
    assert _status(text, "gpu_repro_a") == "stopped: SIGTERM to the runner"
    for step in STEPS[1:]:
        assert _status(text, step) == "not run: SIGTERM to the runner", step
    assert (bundle / "summary.md").read_text() == text
    with tarfile.open(bundle / "gpu_check.tar.gz") as tar:
        names = tar.getnames()
    assert "attempt1/summary.md" in names and "attempt1/logs/gpu_repro_a.log" in names
    assert not any(name.startswith("attempt1/tiny") for name in names)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(child), "the running step outlived the script"


def _sigterm_once(proc: subprocess.Popen, ready, never: str) -> str:
    """SIGTERM to ``proc`` once ``ready()`` holds (within 2 minutes); its output."""
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, never
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return output


def test_sigterm_while_setting_up_leaves_a_summary(tmp_path):
    """Issue 18: a SIGTERM before the first step (the dry run's data being made) left no
    summary.md: the signal handlers came after the setup."""
    marker = tmp_path / "setting_up"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import pathlib, sys, time
        import tools.gpu_check as gpu_check

        def slow_setup(*args, **kwargs):
            pathlib.Path({str(marker)!r}).write_text("now")
            time.sleep(60)

        gpu_check.generate_shapes = slow_setup
        sys.exit(gpu_check.main(gpu_check.get_args_parser().parse_args(sys.argv[1:])))
        """))
    out = tmp_path / "out"
    proc = subprocess.Popen([PY, str(driver), "--dry-run", "--out", str(out)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = _sigterm_once(proc, marker.is_file, "the setup never started")
    assert proc.returncode == 128 + signal.SIGTERM, output
    text = (out / "attempt1" / "summary.md").read_text()
    assert "Stopped by a signal before any step started (while setting up)" in text
    for step in STEPS:
        assert _status(text, step) == "not run: SIGTERM to the runner", step


def _fake_training(step, fail: tuple[str, ...] = ()):
    """A training step that leaves a finished run where train.py would (``--project``,
    ``--name``, the next free name when taken), or fails when named in ``fail``."""
    if step.name in fail:
        return dataclasses.replace(step, command=(PY, "-c", "raise SystemExit(1)"))
    if step.command[1] != "train.py":
        return dataclasses.replace(step, command=PASS) if step.name != "drift_gpu_repro" else None
    project = step.command[step.command.index("--project") + 1]
    name = step.command[step.command.index("--name") + 1]
    code = textwrap.dedent("""
        import pathlib, shutil, sys
        project, name = pathlib.Path(sys.argv[2]), sys.argv[3]
        project.mkdir(parents=True, exist_ok=True)
        taken = [p.name for p in project.iterdir()]
        free = next(f"{name}{n}" if n > 1 else name for n in range(1, 100)
                    if (f"{name}{n}" if n > 1 else name) not in taken)
        shutil.copytree(sys.argv[1], project / free)
        """)
    return dataclasses.replace(step, command=(PY, "-c", code, str(FIXTURE_RUN), project, name))


def test_a_second_attempt_into_the_same_out_compares_its_own_runs(tmp_path, monkeypatch):
    # The first attempt loses gpu_repro_b; the second has both, and its drift reads them.
    _with_commands(monkeypatch, lambda step: _fake_training(step, fail=("gpu_repro_b",)))
    assert main(_args(tmp_path)) == 1
    first = tmp_path / "attempt1" / "summary.md"
    _with_commands(monkeypatch, _fake_training)
    code, text = _check(tmp_path)
    assert code == 0
    assert _status(text, "drift_gpu_repro") == "ok"
    assert "- **gpu_repro** (gpu_repro_a vs gpu_repro_b): identical to the last bit" in text
    assert sorted(p.name for p in (tmp_path / "attempt2" / "runs").iterdir()) == \
        ["cpu_repro", "gpu_ordinary_a", "gpu_ordinary_b", "gpu_repro_a", "gpu_repro_b"]
    log = (tmp_path / "attempt2" / "logs" / "drift_gpu_repro.log").read_text()
    assert f"{tmp_path / 'attempt2' / 'runs' / 'gpu_repro_a'} " in log.splitlines()[0]
    assert "attempt1" not in log
    assert (tmp_path / "attempt2" / "drift_gpu_repro").is_dir()
    # The first attempt's summary is its own, untouched.
    assert _status(first.read_text(), "drift_gpu_repro") == \
        "skipped: needs gpu_repro_b, which failed (exit 1)"


def test_the_command_is_the_same_in_the_readme_the_docs_and_the_script():
    """The lent machine has python3 only: the command given everywhere must run there."""
    command = 'python3 -u -m tools.gpu_check --budget 540 --bundle "$OUT"'
    for path in ("README.md", "docs/gpu.md", "tools/gpu_check.py"):
        assert command in (ROOT / path).read_text(), path


def test_the_versions_come_first_even_when_an_import_fails(tmp_path):
    """A missing package on the lent machine: the interpreter and every version are printed
    before the import that fails, so the failed call still says what was there."""
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent("""
        import runpy, sys
        sys.modules["cv2"] = None  # as if OpenCV were not installed
        sys.argv = ["gpu_check", "--dry-run"]
        runpy.run_module("tools.gpu_check", run_name="__main__")
        """))
    done = subprocess.run([PY, str(driver)], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == f"python {'.'.join(map(str, sys.version_info[:3]))}: {PY}"
    for name in ("torch", "torchvision", "numpy", "scipy", "yaml", "onnx", "pytest"):
        assert any(line.startswith(f"{name} ") for line in lines), name
    assert "opencv: not importable (ModuleNotFoundError" in done.stdout
    assert "torch's CUDA " in done.stdout and "cuDNN " in done.stdout
    assert "ModuleNotFoundError" in done.stderr or "ImportError" in done.stderr


def test_the_versions_are_printed_before_any_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("tools.software._printed", False)
    _with_commands(monkeypatch, lambda step: dataclasses.replace(step, command=PASS))
    assert main(_args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.index("torch ") < out.index("torchvision ") < out.index("13 steps")
    assert out.index("torch's CUDA ") < out.index("gpu_repro_a: ok")
    text = (tmp_path / "attempt1" / "summary.md").read_text()
    assert '"executable": ' in text and '"torchvision": ' in text


def _gpu_plan(tmp_path, *argv):
    args = get_args_parser().parse_args(["--out", str(tmp_path), *argv])
    settings = gpu_check.plan(args, tmp_path)
    return settings, {s.name: s for s in BUILD_STEPS(settings, tmp_path)}


def test_the_cpu_leg_and_the_probes_cpu_pass_run_at_the_records_thread_count(tmp_path):
    """Before, the CPU leg ran at up to 16 threads and the probe at all of them: two causes
    at once between the CPU and the GPU (the committed records are at 2)."""
    _, steps = _gpu_plan(tmp_path)
    command = steps["cpu_repro"].command
    assert command[command.index("--threads") + 1] == "2"
    probe = steps["probe_cpu_vs_gpu"].command
    assert probe[probe.index("--a") + 1] == "device=cpu,threads=2"
    assert probe[probe.index("--b") + 1] == "device=cuda"


def _reference_file(path, epochs):
    path.write_text(json.dumps({"kind": "seed-range reference", "format": 1, "epochs": epochs,
                                "seeds": [0, 1], "runs": []}))
    return path


@pytest.mark.parametrize("epochs, noise", [([], True), (["--epochs", "3"], False)],
                         ids=["same-schedule", "other-schedule"])
def test_the_cpu_vs_gpu_drift_is_held_against_the_committed_seed_range(tmp_path, monkeypatch,
                                                                      epochs, noise):
    reference = _reference_file(tmp_path / "seed_range.json", 5)
    monkeypatch.setattr(gpu_check, "SEED_RANGE", reference)
    settings, steps = _gpu_plan(tmp_path, *epochs)
    command = steps["drift_cpu_vs_gpu"].command
    assert (command[-2:] == ("--noise", str(reference))) is noise
    assert settings["reference"] == (reference if noise else None)
    assert "--noise" not in steps["drift_gpu_repro"].command
    monkeypatch.setattr(gpu_check, "SEED_RANGE", tmp_path / "missing.json")
    assert "--noise" not in _gpu_plan(tmp_path)[1]["drift_cpu_vs_gpu"].command


def test_a_step_that_would_not_fit_in_what_is_left_is_skipped_before_it_starts(tmp_path,
                                                                             monkeypatch):
    """The dry run's trainings take about 18 s a healthy run (10 + 4 an epoch): with 14 s of
    budget they are skipped with the reason instead of started and cut."""
    _with_commands(monkeypatch, lambda step: dataclasses.replace(step, command=PASS))
    code, text = _check(tmp_path, "--budget", "14")
    assert _status(text, "gpu_repro_a").startswith("skipped: would not fit: takes about 18 s, ")
    assert _status(text, "golden_gpu").startswith("skipped: would not fit: takes about 20 s")
    assert _status(text, "benchmark") == "ok"
    assert code == 0 and not (tmp_path / "attempt1" / "logs" / "gpu_repro_a.log").exists()
