"""The article's experiment on a borrowed GPU, in one command: CPU against GPU, repro against
ordinary, with the drift reports, the layer probes and the benchmark, and a Markdown summary.

    python3 -u -m tools.gpu_check --budget 540 --bundle "$OUT"  # on the GPU machine
    python -m tools.gpu_check --dry-run         # every step on the CPU, tiny settings

It prints the interpreter and every package's version first, before importing anything that
could fail on a machine set up by someone else (docs/gpu.md: the command, the budget).

Each call writes a new attempt folder, --out/attemptN (one folder per run under runs/, the
drift and probe reports, benchmark.json, logs/ with each command's output, summary.md), and
compares only its own runs: a second call into the same --out after a partial first one is
safe. The steps run in the order of what their figures are worth, in case the budget ends
first: the two --repro GPU runs and their drift, a probe of the GPU against itself, the CPU run
with the CPU-vs-GPU drift and probe, the ordinary GPU runs and their drift, the benchmark, and
the CUDA tests. The CPU leg runs at the committed records' thread count (2), so that the
device is the one cause between it and the GPU's. Each step runs under a time limit (then
SIGTERM, then SIGKILL to its process group); one that fails is recorded and the others still
run, those that need it are skipped and say so; all of them share --budget seconds, and a
step is skipped before it starts when less than it takes is left (docs/gpu.md says how to set
--budget from what is left of the lease). summary.md is rewritten (atomically) whenever a
step starts or ends, and once more on SIGTERM (caught from before the setup: the golden copy,
the dry run's data), so whatever stops this script leaves a summary that lists every step with
its status. Only the repository and what the GPU machine has installed are needed (no
pycocotools).

--dry-run replaces the GPU, the data and the model with the CPU, a 16-image set and a micro
model, and trains 2 epochs unless --epochs says otherwise; every option given is honoured.

Exit status: 0 when every step that ran succeeded and at least one ran; 1 otherwise (the
summary's headline and the last line printed say "N of M steps succeeded (F failed, K timed
out, S skipped)"); 2 an option out of range (--budget not above 0, --epochs under 1);
128 + the signal's number when a signal stopped it.
"""
from __future__ import annotations

import argparse
import io
import re
import shutil
import sys
import tarfile
import time
from pathlib import Path

from tools.software import print_software, software_versions

if __name__ == "__main__":  # first of all: the imports below fail on a missing package
    print_software()

from tools.golden import GOLDEN  # noqa: E402
from tools.gpu_summary import format_summary, machine_versions, outcome  # noqa: E402
from utils.base.atomic_io import atomic_write_bytes, atomic_write_text  # noqa: E402
from utils.base.errors import InputError, report_input_error  # noqa: E402
from utils.base.step_runner import Step, StepRunner  # noqa: E402
from utils.data.data_config import prepare_data  # noqa: E402
from utils.data.shapes import generate_shapes  # noqa: E402
from utils.engine.options import REPRO_THREADS  # noqa: E402
from utils.engine.seed_reference import load_reference  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The seed range of the GPU plan's training (the built-in default under --repro, 5 epochs),
# made by tools.seed_range; the CPU-vs-GPU drift is held against it when it matches.
SEED_RANGE = ROOT / "tests" / "golden" / "seed_range.json"
BUILT_IN_DATA = "data/shapes.data"

# Seconds each kind of step may run, on the GPU machine and in the dry run (2 shared CPU
# cores). Generous against what a healthy step needs; each one's purpose is to stop a hang.
LIMITS = {"gpu": {"train": 150, "cpu_train": 240, "drift": 60, "probe": 120, "benchmark": 240,
                  "pytest": 150},
          "dry": {"train": 300, "cpu_train": 300, "drift": 120, "probe": 180, "benchmark": 300,
                  "pytest": 300}}

# Seconds a healthy step of each kind takes: a step is skipped before it starts when less is
# left of the budget (utils/base/step_runner.py). A training's is (start, per epoch). The GPU's
# are estimates until a GPU has run this (the CPU leg's from the AMD EPYC's 34 img/s under
# --repro at 2 threads, docs/measurements/default_run.md): the summary's seconds say what they
# were.
EXPECTED = {"gpu": {"train": (25, 5), "cpu_train": (20, 20), "drift": 10, "probe": 20,
                    "golden": 40, "benchmark": 120, "pytest": 60},
            "dry": {"train": (10, 4), "cpu_train": (10, 4), "drift": 5, "probe": 5,
                    "golden": 20, "benchmark": 10, "pytest": 10}}

# Epochs of each training when --epochs is not given: the GPU's, and the dry run's (enough for
# a drift report to compare two epochs).
EPOCHS = {"gpu": 5, "dry": 2}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CPU vs GPU, repro vs ordinary, on one GPU.")
    parser.add_argument("--out", default="runs/gpu_check", help="folder of attempt folders")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs of each training (default {EPOCHS['gpu']}; "
                             f"{EPOCHS['dry']} with --dry-run)")
    parser.add_argument("--budget", type=float, default=540,
                        help="seconds all steps share: a step is cut to what is left, and "
                             "skipped under 5 s; the script ends within the budget plus a "
                             "step's 10 s grace and the summary (540 fits a 10-minute limit)")
    parser.add_argument("--bundle", default=None,
                        help="also keep BUNDLE/summary.md and BUNDLE/gpu_check.tar.gz (the "
                             "attempt without checkpoints) up to date, for a machine that "
                             "gives back only a few files")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU only, a 16-image set and a micro model: checks the script")
    return parser


def new_attempt(out: Path) -> Path:
    """``out/attemptN``, N one more than the highest there (made atomically): a call never
    reads or extends another call's runs."""
    out.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in out.iterdir() if (m := re.fullmatch(r"attempt(\d+)", p.name))]
    number = max(taken, default=0) + 1
    while True:
        try:
            (out / f"attempt{number}").mkdir()
            return out / f"attempt{number}"
        except FileExistsError:
            number += 1


def check_args(args: argparse.Namespace) -> None:
    """Refuse what would run nothing useful: a budget that starts no step, no epoch."""
    if not args.budget > 0:  # NaN too: no comparison holds for it
        raise InputError(f"--budget must be a number of seconds above 0, got {args.budget:g}")
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be 1 or more, got {args.epochs}")


def plan(args, attempt: Path) -> dict:
    """The commands' shared settings: the default training on a GPU, or a tiny one on the CPU
    (its data made by :func:`prepare`). --epochs is honoured in both. The CPU leg and the
    probe's CPU pass run at the committed records' thread count (--repro's 2), so that what
    parts the CPU from the GPU is the device, not also the thread count."""
    mode = "dry" if args.dry_run else "gpu"
    epochs = EPOCHS[mode] if args.epochs is None else args.epochs
    expected = {k: v[0] + v[1] * epochs if isinstance(v, tuple) else v
                for k, v in EXPECTED[mode].items()}
    shared = {"epochs": epochs, "cpu_threads": str(REPRO_THREADS),
              "probe_cpu": f"device=cpu,threads={REPRO_THREADS}", "limits": LIMITS[mode],
              "expected": expected}
    if not args.dry_run:
        # 50 timed steps a case (the benchmark's GPU default): 6 would be tens of ms.
        return {**shared, "gpu": "0", "train": ["--epochs", str(epochs)], "data": None,
                "data_file": BUILT_IN_DATA, "reference": usable_reference(SEED_RANGE, epochs),
                "bench": ["--cfgs", "cfg/yolov3-tiny.cfg", "cfg/yolov3.cfg", "--img-sizes",
                          "416", "--repeats", "3"],
                "probe_gpu": "device=cuda", "golden": "cuda"}
    data = attempt / "tiny"
    micro = str(ROOT / "tests" / "data" / "micro.cfg")
    return {**shared, "gpu": "cpu", "data": str(data / "tiny.data"),
            "data_file": str(data / "tiny.data"), "reference": None,
            "train": ["--epochs", str(epochs), "--cfg", micro, "--img-size", "64",
                      "--batch-size", "4", "--data", str(data / "tiny.data")],
            "bench": ["--cfgs", micro, "--img-sizes", "64", "--batch-size", "4", "--steps", "2",
                      "--repeats", "1", "--data", str(data / "tiny.data")],
            "probe_gpu": "device=cpu", "golden": "cpu"}


def usable_reference(path: Path, epochs: int) -> Path | None:
    """``path`` when it is a seed-range reference of ``epochs`` epochs (the GPU plan's
    training), else None: a reference of another schedule would be refused by the drift."""
    try:
        return path if load_reference(path)["epochs"] == epochs else None
    except (InputError, KeyError):
        return None


def prepare(settings: dict, attempt: Path) -> None:
    """What the steps read before the first starts: the golden records' copy, and the dry
    run's data set."""
    # The golden step compares with the committed records and adds the GPU's to this copy, so
    # that a same-model GPU's earlier record is checked and the file can replace the committed
    # one.
    shutil.copyfile(GOLDEN, attempt / "golden.json")
    if settings["data_file"] == BUILT_IN_DATA:
        # The built-in set, before the first training: the summary's "Same start?" holds its
        # digest against the committed one from the first report on.
        prepare_data(ROOT / BUILT_IN_DATA)
    if settings["data"]:
        data = Path(settings["data"]).parent
        generate_shapes(data, n_train=16, n_val=8, size=64, seed=0)
        (data / "tiny.names").write_text("circle\nrectangle\ntriangle\nstar\n")
        (data / "tiny.data").write_text("classes=4\ntrain=images/train\nvalid=images/val\n"
                                        "names=tiny.names\n")


# Drift steps: (name, run a, run b). The summary reads them too.
DRIFTS = (("gpu_repro", "gpu_repro_a", "gpu_repro_b"), ("cpu_vs_gpu", "cpu_repro", "gpu_repro_a"),
          ("gpu_ordinary", "gpu_ordinary_a", "gpu_ordinary_b"))


def build_steps(settings: dict, attempt: Path) -> list[Step]:
    """Every step of one attempt, in the order of what its figures are worth; each reads and
    writes only under ``attempt``, and is skipped before it starts when less than its expected
    seconds are left of the budget."""
    py, runs, limits = sys.executable, attempt / "runs", settings["limits"]
    expected = settings["expected"]
    common = (*settings["train"], "--project", str(runs), "--quiet")
    data = ("--data", settings["data"]) if settings["data"] else ()
    last = str(runs / "gpu_repro_a" / "weights" / "last.pt")

    def train(name: str, *flags: str, kind: str = "train") -> Step:
        return Step(name, (py, "train.py", *common, *flags, "--name", name), limits[kind],
                    expected=expected[kind])

    def drift(name: str, *extra: str) -> Step:
        _, a, b = next(d for d in DRIFTS if d[0] == name)
        return Step(f"drift_{name}", (py, "-m", "tools.drift", str(runs / a), str(runs / b),
                                      "--out", str(attempt / f"drift_{name}"), *extra),
                    limits["drift"], needs=(a, b), ok_codes=(0, 1), expected=expected["drift"])

    def probe(name: str, *settings_ab: str) -> Step:
        return Step(name, (py, "-m", "tools.probe", last, *settings_ab, "--out",
                           str(attempt / name), *data),
                    limits["probe"], needs=("gpu_repro_a",), ok_codes=(0, 1),
                    expected=expected["probe"])

    gpu = ("--device", settings["gpu"])
    # The CPU-vs-GPU difference beside the seed range of the same training, when one is
    # committed for it (tests/golden/seed_range.json, tools.seed_range).
    noise = ("--noise", str(settings["reference"])) if settings["reference"] else ()
    return [train("gpu_repro_a", "--repro", *gpu), train("gpu_repro_b", "--repro", *gpu),
            drift("gpu_repro"),
            probe("probe_gpu_repeat", "--a", settings["probe_gpu"], "--repeat"),
            train("cpu_repro", "--repro", "--device", "cpu", "--threads",
                  settings["cpu_threads"], kind="cpu_train"),
            drift("cpu_vs_gpu", *noise),
            probe("probe_cpu_vs_gpu", "--a", settings["probe_cpu"], "--b",
                  settings["probe_gpu"]),
            # The GPU's golden record (issue 23): the small training's fingerprints and layer
            # trace, checked against the committed records copied into golden.json and added
            # there, for the next GPU of the same model (and software) to match.
            Step("golden_gpu", (py, "-m", "tools.golden", "--device", settings["golden"],
                                "--record", "--file", str(attempt / "golden.json")),
                 limits["probe"], ok_codes=(0, 1), expected=expected["golden"]),
            train("gpu_ordinary_a", *gpu), train("gpu_ordinary_b", *gpu),
            drift("gpu_ordinary"),
            Step("benchmark", (py, "-m", "tools.benchmark", *settings["bench"], *gpu, "--out",
                               str(attempt / "benchmark.json")), limits["benchmark"],
                 expected=expected["benchmark"]),
            Step("pytest_cuda", (py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "tests/test_cuda.py"), limits["pytest"], ok_codes=(0, 5),
                 expected=expected["pytest"])]


def write_bundle(attempt: Path, folder: Path) -> None:
    """``folder``/summary.md and ``folder``/gpu_check.tar.gz: the attempt's records without its
    checkpoints and the dry run's images, each replaced whole."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(attempt.rglob("*")):
            inside = path.relative_to(attempt)
            if path.suffix == ".pt" or inside.parts[0] == "tiny" or not path.is_file():
                continue
            try:
                tar.add(path, arcname=str(attempt.name / inside), recursive=False)
            except FileNotFoundError:  # replaced by a running step meanwhile
                continue
    atomic_write_bytes(folder / "gpu_check.tar.gz", buffer.getvalue())
    atomic_write_text(folder / "summary.md", (attempt / "summary.md").read_text())


def main(args: argparse.Namespace) -> int:
    """The exit status (see the module's docstring); the summary is the attempt's summary.md."""
    print_software()  # (already printed when run as a script: then this prints nothing)
    try:
        check_args(args)
    except InputError as err:
        return report_input_error(err)
    started = time.monotonic()
    out = Path(args.out) if Path(args.out).is_absolute() else (ROOT / args.out).resolve()
    attempt = new_attempt(out)
    (attempt / "logs").mkdir()
    settings = plan(args, attempt)
    versions: dict = {}
    printed: set[str] = set()
    summary = attempt / "summary.md"

    def report(runner: StepRunner) -> None:
        if not versions:
            versions.update(software_versions(), **machine_versions())
        atomic_write_text(summary, format_summary(attempt, runner, versions, args.dry_run,
                                                  DRIFTS, settings["data_file"],
                                                  settings["reference"]))
        if args.bundle:
            write_bundle(attempt, Path(args.bundle))
        for record in runner.records:
            if record.state not in ("pending", "running") and record.step.name not in printed:
                printed.add(record.step.name)
                print(f"{record.step.name}: {record.status()} ({record.seconds:.0f} s)",
                      flush=True)

    runner = StepRunner(build_steps(settings, attempt), attempt / "logs", args.budget,
                        cwd=ROOT, on_change=report, started=started)
    print(f"{attempt}: {len(runner.records)} steps, {args.budget:.0f} s budget", flush=True)
    # The setup runs inside: a SIGTERM while the data is made still leaves a summary.
    finished = runner.run_all(setup=lambda: prepare(settings, attempt))
    print(f"summary: {summary}")
    if not finished:
        return 128 + runner.stopped_by
    code, counts = outcome(runner)
    print(counts)
    return code


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
