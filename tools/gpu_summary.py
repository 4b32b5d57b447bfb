"""The Markdown summary of one attempt of ``tools.gpu_check``: whether the CPU and GPU runs
started alike (the data, the initial weights, the software), every step with its status, the
machine, the runs' last epochs, the drift reports (which recorded differences are the
device's), what to expect of CPU against GPU beside what was measured, the probes and the
benchmark rows.

Written from whatever exists at the moment it is called (a step may still be running, or
never have run): a missing or unreadable result is named in its place, never a reason to
stop writing.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path

import yaml

from tools.drift import build_report
from utils.base.errors import InputError
from utils.base.step_runner import StepRunner
from utils.data.data_config import load_data_config
from utils.data.shapes import DEFAULT_DIGEST
from utils.engine.results import read_results

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
# The packages whose versions decide the bits, held against requirements.txt's pins.
PINNED = ("torch", "torchvision", "numpy")
# The runs whose start is compared: the GPU's --repro run and the CPU's.
GPU_RUN, CPU_RUN = "gpu_repro_a", "cpu_repro"
# Recorded settings that say which device ran (a CPU-vs-GPU pair must differ in them), and
# those of the CPU's thread count (gpu_check runs both legs at 2 threads so that they don't).
DEVICE_SETTINGS = ("options.device", "environment.device", "environment.device_name",
                   "environment.machine.gpu.")
THREAD_SETTINGS = ("options.threads", "environment.torch_threads",
                   "environment.machine.kernels.openmp_threads")

PROBES = (("probe_gpu_repeat", "the GPU against itself (--repeat) on the last checkpoint"),
          ("probe_cpu_vs_gpu", "CPU against GPU on the last checkpoint"))
PROBE_LINES = ("input:", "forward:", "backward:", "every layer", "loss:")


def machine_versions() -> dict:
    import torch
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        info["nvidia-smi"] = smi.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia-smi"] = None
    return info


def format_summary(attempt: Path, runner: StepRunner, versions: dict, dry_run: bool,
                   drifts: tuple[tuple[str, str, str], ...], data: str | None = None,
                   reference: Path | None = None) -> str:
    """``drifts``: (name, run a, run b) of each drift step ``drift_<name>``; ``data``: the
    .data file the runs train on; ``reference``: the seed-range reference the CPU-vs-GPU
    difference is held against (None: there is none for this training)."""
    headline, same_start = same_start_lines(attempt, versions, data)
    lines = [f"# GPU check, {attempt.name}{' (dry run on the CPU)' if dry_run else ''}", "",
             *headline, _state(runner), "", *same_start, "", "## Steps", "",
             "| step | status | seconds | limit s |", "| --- | --- | --- | --- |"]
    for r in runner.records:
        limit = f"{r.limit:.0f}" if r.limit is not None else f"({r.step.limit:.0f})"
        lines.append(f"| {r.step.name} | {r.status()} | {r.seconds:.1f} | {limit} |")
    lines += ["", "## Machine and software", "", "```", json.dumps(versions, indent=1), "```"]
    lines += ["", "## Runs (last epoch)", "",
              "| run | epoch | mAP@0.5 | mAP@0.5:0.95 | fingerprint |",
              "| --- | --- | --- | --- | --- |"]
    lines += [_last_line(run) for run in sorted((attempt / "runs").glob("*"))]
    lines += ["", "## Drift", ""]
    for name, a, b in drifts:
        if _has_results(attempt / "runs" / a) and _has_results(attempt / "runs" / b):
            lines += _drift_lines(name, attempt / "runs" / a, attempt / "runs" / b)
    lines += cpu_vs_gpu_lines(attempt, reference, dry_run)
    lines += _probe_lines(attempt, runner)
    golden = attempt / "logs" / "golden_gpu.log"
    if runner.record("golden_gpu").ok and golden.is_file():
        lines += ["", "## Golden record (the small training against the committed records; "
                  "golden.json is tests/golden/portable.json with this one added)", ""]
        lines += [f"- {line.strip()}" for line in golden.read_text().splitlines()
                  if line.strip()][:12]
    bench = attempt / "benchmark.json"
    if runner.record("benchmark").ok and bench.is_file():
        lines += _benchmark_lines(json.loads(bench.read_text()))
    return "\n".join(lines) + "\n"


def _probe_lines(attempt: Path, runner: StepRunner) -> list[str]:
    lines = []
    for name, title in PROBES:
        log = attempt / "logs" / f"{name}.log"
        if runner.record(name).ok and log.is_file():
            found = [line for line in log.read_text().splitlines()
                     if line.startswith(PROBE_LINES)]
            lines += ["", f"## Probe: {title}", ""]
            lines += [f"- {line}" for line in found] or [f"- (no result: see logs/{log.name})"]
    return lines


def _has_results(run: Path) -> bool:
    return (run / "results.txt").is_file()


def outcome(runner: StepRunner) -> tuple[int, str]:
    """The exit status of a finished attempt and the sentence that says it: 0 only when every
    step that ran succeeded and at least one ran (a skipped step checked nothing; a timed-out
    one is no success), else 1 with how many succeeded and what became of the others."""
    states = [r.state for r in runner.records]
    ok, total = states.count("ok"), len(states)
    ran = ok + states.count("failed") + states.count("timed out")
    if ok == total:
        return 0, f"{ok} of {total} steps succeeded"
    counts = (f"{ok} of {total} steps succeeded ({states.count('failed')} failed, "
              f"{states.count('timed out')} timed out, {states.count('skipped')} skipped)")
    return (0 if ran and ok == ran else 1), counts


def _state(runner: StepRunner) -> str:
    elapsed = f"{runner.elapsed():.0f} s of the {runner.budget:.0f} s budget"
    if runner.stopped_by is not None:
        if not any(r.started for r in runner.records):
            return (f"Stopped by a signal before any step started (while setting up), after "
                    f"{elapsed}: no step ran.")
        return f"Stopped by a signal after {elapsed}: the steps below say where."
    running = [r.step.name for r in runner.records if r.state == "running"]
    if running:
        return f"In progress: {running[0]} running, {elapsed} gone."
    if any(r.state == "pending" for r in runner.records):
        return f"In progress: {elapsed} gone."
    code, counts = outcome(runner)
    if all(r.ok for r in runner.records):
        return f"Complete: {counts}, {elapsed} used."
    return (f"Incomplete: {counts}, {elapsed} used"
            + ("; every step that ran succeeded." if code == 0 else "."))


def _last_line(run: Path) -> str:
    try:
        rows = read_results(run)
    except Exception as err:  # a failed or running run: say so in the table, keep writing
        return f"| {run.name} | (no results: {type(err).__name__}) | | | |"
    if not rows:
        return f"| {run.name} | (no epoch yet) | | | |"
    last = rows[-1].values
    return (f"| {run.name} | {rows[-1].epoch} | {last['mAP@0.5']:.4f} | "
            f"{last['mAP@0.5:0.95']:.4f} | {rows[-1].fingerprint} |")


def _drift_lines(name: str, a: Path, b: Path) -> list[str]:
    try:
        pair = build_report([str(a), str(b)], 0.0)[0]["pairs"][0]
    except Exception as err:  # a run being written, or unreadable: name it, keep writing
        return [f"- **{name}** ({a.name} vs {b.name}): (no report: {type(err).__name__}: {err})"]
    lines = [f"- **{name}** ({a.name} vs {b.name}): {pair['headline']}"]
    for metric in ("total", "mAP@0.5", "mAP@0.5:0.95"):
        if metric in pair["largest"]:
            v = pair["largest"][metric]
            lines.append(f"  - {metric}: largest |difference| {v['max_abs']:.3g} "
                         f"({v['max_rel_percent']:.3g}%) at epoch {v['epoch']}; last epoch "
                         f"{v['last_abs']:.3g}")
    lines.append(f"  - recorded settings that differ: {_causes(pair)}")
    return lines


def setting_causes(pair: dict) -> dict[str, list[str]]:
    """The pair's recorded settings that differ, sorted by cause: the device's (which device
    ran: the difference a CPU-vs-GPU pair is about), the CPU thread count's, and the others
    (each one more cause of its own)."""
    causes: dict[str, list[str]] = {"device": [], "threads": [], "other": []}
    for d in pair["settings_differences"]:
        key = d["setting"]
        kind = ("device" if _matches(key, DEVICE_SETTINGS) else
                "threads" if _matches(key, THREAD_SETTINGS) else "other")
        causes[kind].append(key)
    return causes


def _matches(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in prefixes)


def _causes(pair: dict) -> str:
    causes = setting_causes(pair)
    if not any(causes.values()):
        return "none"
    return "; ".join(f"{label}: {', '.join(causes[kind]) or 'none'}" for kind, label in
                     (("device", "the device's"), ("threads", "the thread count's"),
                      ("other", "other")))


def _benchmark_lines(report: dict) -> list[str]:
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in report["matmul_gflops_per_s"].items())
    lines = ["", "## Benchmark", "",
             f"{report['device']}; matmul GFLOP/s: {peaks}; amp = {report['amp_precision']}; "
             f"{report.get('steps', '?')} timed steps a case", "",
             "| model | px | mode | train img/s | % of matmul | data % | b1 ms/img | "
             "b16 img/s | peak GB | workers |", "|" + " --- |" * 10]
    for c in report["cases"]:
        tf32 = " (TF32 convolutions)" if c.get("conv_tf32") and c["precision"] == "fp32" else ""
        lines.append(f"| {Path(c['cfg']).stem} | {c['img_size']} | {c['mode']}{tf32} | "
                     f"{c['train_img_per_s']:.1f} | {c['fraction_of_matmul'] * 100:.0f} | "
                     f"{c['data_share'] * 100:.1f} | {c['infer_b1_ms_per_img']:.2f} | "
                     f"{c['infer_b16_img_per_s']:.0f} | {c['peak_memory_gb']:.2f} | "
                     f"{c['workers']} |")
    return lines


# -- Same start? ------------------------------------------------------------------------------

def same_start_lines(attempt: Path, versions: dict, data: str | None
                     ) -> tuple[list[str], list[str]]:
    """(headline lines for the top, the "Same start?" section): the data's digest against the
    committed one, the initial weights of the GPU run against the CPU run's, and the software
    against requirements.txt's pins. A set regenerated here with another digest is a
    headline: every run of the attempt trained on other pixels than the records."""
    checks = [data_check(data, attempt), initial_check(attempt), software_check(versions)]
    answers = [ok for ok, _ in checks]
    verdict = ("yes" if all(a is True for a in answers) else
               "no" if any(a is False for a in answers) else "not known yet")
    section = ["## Same start?", "", f"**{verdict}**: the same data, initial weights and "
               "software as the records and as each other, the conditions under which a CPU and "
               "a GPU run differ by their arithmetic alone.", ""]
    section += [f"- {'yes' if ok else 'no' if ok is False else 'not known'}: {text}"
                for ok, text in checks]
    headline = []
    if checks[0][0] is False and "digest" in checks[0][1]:
        headline = [f"**HEADLINE: the built-in data here is not the committed set: "
                    f"{checks[0][1]}** Its runs trained on other pixels than every record; "
                    "compare them with each other only.", ""]
    return headline, section


def data_check(data: str | None, attempt: Path) -> tuple[bool | None, str]:
    """The built-in set's digest (its DIGEST file: decoded pixels and labels) against the
    committed DEFAULT_DIGEST, and against what the runs recorded (``shapes_digest``)."""
    if data is None:
        return None, "the data file is not known"
    try:
        config = load_data_config(ROOT / data, check_paths=False)
    except (InputError, OSError) as err:
        return None, f"{data}: unreadable ({err})"
    if config.generate != "shapes":
        return None, (f"{data} is not the built-in set (the dry run's tiny set): no committed "
                      "digest to hold it against")
    folder = Path(config.train).parent.parent
    try:
        digest = (folder / "DIGEST").read_text().strip()
    except OSError:
        return None, f"the built-in set is not generated yet ({folder})"
    recorded = {r: _record(attempt / "runs" / r).get("shapes_digest") for r in (GPU_RUN, CPU_RUN)}
    others = {r: d for r, d in recorded.items() if d and d != digest}
    where = f"the built-in set's digest ({_relative(folder / 'DIGEST')})"
    if digest != DEFAULT_DIGEST:
        return False, (f"{where} is {digest}, the committed one (utils/data/shapes.py) "
                       f"{DEFAULT_DIGEST}: this OpenCV or NumPy drew other pixels.")
    if others:
        return False, f"{where} is the committed one, but the runs recorded {others}"
    return True, f"{where} is the committed one, {digest[:16]}..."


def initial_check(attempt: Path) -> tuple[bool | None, str]:
    """The GPU run's initial-weights fingerprint (repro.yaml) against the CPU run's."""
    found = {r: _record(attempt / "runs" / r).get("initial_fingerprint")
             for r in (GPU_RUN, CPU_RUN)}
    text = ", ".join(f"{r} {v or '(not recorded yet)'}" for r, v in found.items())
    if None in found.values():
        return None, f"initial weights: {text}"
    return found[GPU_RUN] == found[CPU_RUN], f"initial weights: {text}"


def software_check(versions: dict, requirements: Path = REQUIREMENTS) -> tuple[bool | None, str]:
    """torch, torchvision and numpy here against requirements.txt's pins."""
    try:
        pins = requirement_pins(requirements.read_text())
    except OSError:
        return None, f"{requirements.name} unreadable"
    verdicts, words = [], []
    for name in PINNED:
        version, spec = versions.get(name), pins.get(name)
        ok = None if version is None or spec is None else meets(version, spec)
        verdicts.append(ok)
        words.append(f"{name} {version or '(not importable)'} against {spec or 'no pin'}"
                     + {True: "", False: " (another version)", None: ""}[ok])
    ok = False if False in verdicts else (None if None in verdicts else True)
    return ok, "software: " + "; ".join(words) + " (requirements.txt)"


def requirement_pins(text: str) -> dict[str, str]:
    """``{name: specifier}`` of requirements.txt's lines ("torch==2.14.1" -> "==2.14.1")."""
    pins = {}
    for line in text.splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*((?:[<>=!~]=?[^,\s#]+\s*,?\s*)+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2).replace(" ", "")
    return pins


def meets(version: str, spec: str) -> bool:
    """Whether ``version`` ("2.11.0+cu130") meets every clause of ``spec`` (">=2.0,<3",
    "==2.14.1"); the local part after "+" and pre-release letters are left out."""
    have = _release(version)
    checks = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">=": lambda a, b: a >= b,
              "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
              "~=": lambda a, b: a >= b and a[:len(b) - 1] == b[:-1]}
    for clause in filter(None, spec.split(",")):
        op = next(o for o in ("==", "!=", ">=", "<=", "~=", ">", "<") if clause.startswith(o))
        want = _release(clause[len(op):])
        width = max(len(have), len(want))
        if not checks[op](have + (0,) * (width - len(have)), want + (0,) * (width - len(want))):
            return False
    return True


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(re.match(r"\d*", part).group() or 0)
                 for part in version.split("+")[0].split("."))


def _record(run: Path) -> dict:
    try:
        return yaml.safe_load((run / "repro.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# -- CPU against GPU: what to expect, what was measured --------------------------------------

EXPECTED = ("What to expect. `--repro` promises the same bits run after run on one device (the "
            "two GPU runs above); it does not promise them across devices. The CPU and the GPU "
            "start from the same weights and see the same batches in fp32 (Same start?), but "
            "their convolution and batch-norm kernels (oneDNN or ATen on the CPU, cuDNN on the "
            "GPU) add in other orders and round differently from layer 0 on, so the two runs "
            "are expected to part at epoch 0 by rounding-sized amounts, which training then "
            "amplifies as a change of seed does. The question is not whether they part but "
            "whether the end differs by more than seeds alone make it differ.")


def cpu_vs_gpu_lines(attempt: Path, reference: Path | None, dry_run: bool) -> list[str]:
    """The paragraph that sets the CPU-vs-GPU difference beside what is expected: the first
    differing epoch, the first differing layer (the probe), the end's mAP gap against the
    seed range, and which recorded differences are the device's."""
    a, b = attempt / "runs" / CPU_RUN, attempt / "runs" / GPU_RUN
    lines = ["", "## CPU against GPU: expected, and measured", "", EXPECTED, ""]
    if not (_has_results(a) and _has_results(b)):
        return lines + ["Measured: nothing yet (the CPU and GPU --repro runs are not both "
                        "there)."]
    noise = [str(reference)] if reference is not None else None
    try:
        report = build_report([str(a), str(b)], 0.0, noise)[0]
        refused = None
    except InputError as err:  # the reference is another training's: say why, keep the rest
        report, refused = build_report([str(a), str(b)], 0.0)[0], str(err)
    pair = report["pairs"][0]
    first = pair["first_difference"]
    lines.append("Measured:")
    lines.append(f"- first differing epoch: {first['epoch']} ({first['metric']} {first['a']} "
                 f"vs {first['b']})" if first else f"- no differing epoch: {pair['headline']}")
    lines.append(f"- first differing layer (one pass of the GPU run's last checkpoint): "
                 f"{_probe_verdict(attempt)}")
    lines.append(f"- at the end: {_end_gap(pair, reference, refused, dry_run)}")
    lines.append(f"- recorded settings that differ: {_device_verdict(setting_causes(pair))}")
    return lines


def _device_verdict(causes: dict[str, list[str]]) -> str:
    device, other = causes["device"], causes["threads"] + causes["other"]
    if not device and not other:
        return "none"
    said = f"the device's ({', '.join(device) or 'none'})"
    if other:
        return f"{said}; besides the device, each one more possible cause: {', '.join(other)}"
    return f"{said} only (both legs at the same thread count): the difference is the device's"


def _probe_verdict(attempt: Path) -> str:
    log = attempt / "logs" / "probe_cpu_vs_gpu.log"
    if not log.is_file():
        return "no probe result"
    found = [line for line in log.read_text().splitlines()
             if line.startswith(("input:", "forward:", "every layer"))]
    return "; ".join(found) or f"no verdict in logs/{log.name}"


def _end_gap(pair: dict, reference: Path | None, refused: str | None, dry_run: bool) -> str:
    last = pair["per_epoch"][-1] if pair["per_epoch"] else None
    if last is None:
        return "no epoch in common"
    gaps = ", ".join(f"{m} {last['metrics'][m]['abs']:+.4g}" for m in ("mAP@0.5", "mAP@0.5:0.95"))
    where = f"epoch {last['epoch']}: GPU - CPU {gaps}"
    if refused:
        return f"{where}; the seed-range reference was refused: {refused}"
    if "noise" in pair:
        return f"{where}; {pair['noise']['sentence']}"
    if dry_run:
        return f"{where}; no seed range for the dry run's micro training"
    return (f"{where}; no seed-range reference for this training (tests/golden/seed_range.json "
            "holds the default --repro run of 5 epochs: docs/gpu.md says how to make it)")
