"""The article's experiment on a borrowed GPU, in one command: CPU against GPU, repro against
ordinary, with the drift report, the layer probe and the benchmark, and a Markdown summary.

    python3 -m scripts.gpu_check                      # on a one-GPU machine: about 6 minutes
    python3 -m scripts.gpu_check --dry-run            # every step on the CPU, tiny settings

Everything goes under --out (default runs/gpu_check): one folder per run, the drift and probe
reports, benchmark.json, the log of every command, and summary.md with every figure, the GPU's
name and the software versions. Steps that fail are recorded and the rest still run; steps that
would pass --budget seconds are skipped and said so, so the summary is always written.
Only the repository and what the GPU machine has installed are needed (no pycocotools).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from utils.drift import build_report
from utils.results import read_results
from utils.shapes import generate_shapes

ROOT = Path(__file__).resolve().parent.parent


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CPU vs GPU, repro vs ordinary, on one GPU.")
    parser.add_argument("--out", default="runs/gpu_check")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each training")
    parser.add_argument("--budget", type=float, default=400,
                        help="seconds; a step that would start past it is skipped")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU only, a 16-image set and a micro model: checks the script")
    return parser


class Steps:
    """Runs commands with a log each, keeps their times and outcomes for the summary."""

    def __init__(self, out: Path, budget: float):
        self.out, self.budget, self.started = out, budget, time.time()
        self.records: list[dict] = []

    def run(self, name: str, command: list[str], env: dict | None = None,
            expect_codes: tuple[int, ...] = (0,)) -> bool:
        elapsed = time.time() - self.started
        if elapsed > self.budget:
            self.records.append({"step": name, "status": f"skipped (budget spent: {elapsed:.0f} s)",
                                 "seconds": 0.0})
            return False
        log = self.out / "logs" / f"{name}.log"
        start = time.time()
        with open(log, "w") as f:
            done = subprocess.run(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, **(env or {})))
        ok = done.returncode in expect_codes
        self.records.append({"step": name, "status": "ok" if ok else f"FAILED ({done.returncode})",
                             "seconds": time.time() - start, "command": " ".join(command),
                             "exit": done.returncode})
        print(f"{name}: {self.records[-1]['status']} in {self.records[-1]['seconds']:.0f} s",
              flush=True)
        return ok


def versions() -> dict:
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


def plan(args, out: Path) -> dict:
    """The commands' shared settings: the default training on a GPU, or a tiny one on the CPU."""
    if not args.dry_run:
        return {"gpu": "0", "train": ["--epochs", str(args.epochs)], "data": None,
                "bench": ["--cfgs", "cfg/yolov3-tiny.cfg", "cfg/yolov3.cfg", "--img-sizes", "416",
                          "--steps", "6", "--repeats", "3"],
                "cpu_threads": str(min(16, os.cpu_count() or 1)), "probe_b": "device=cuda"}
    data = out / "tiny"
    generate_shapes(data, n_train=16, n_val=8, size=64, seed=0)
    (data / "tiny.names").write_text("circle\nrectangle\ntriangle\nstar\n")
    (data / "tiny.data").write_text("classes=4\ntrain=images/train\nvalid=images/val\n"
                                    "names=tiny.names\n")
    micro = str(ROOT / "tests" / "data" / "micro.cfg")
    return {"gpu": "cpu", "data": str(data / "tiny.data"),
            "train": ["--epochs", "2", "--cfg", micro, "--img-size", "64", "--batch-size", "4",
                      "--data", str(data / "tiny.data")],
            "bench": ["--cfgs", micro, "--img-sizes", "64", "--batch-size", "4", "--steps", "2",
                      "--repeats", "1", "--data", str(data / "tiny.data")],
            "cpu_threads": "2", "probe_b": "device=cpu"}


def main(args: argparse.Namespace) -> Path:
    out = (ROOT / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    settings = plan(args, out)
    steps = Steps(out, args.budget)
    py = sys.executable
    common = [*settings["train"], "--project", str(out / "runs"), "--quiet"]
    steps.run("pytest_cuda", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/test_cuda.py"], expect_codes=(0, 5))
    steps.run("gpu_repro_a", [py, "train.py", *common, "--repro", "--device", settings["gpu"],
                              "--name", "gpu_repro_a"])
    steps.run("gpu_repro_b", [py, "train.py", *common, "--repro", "--device", settings["gpu"],
                              "--name", "gpu_repro_b"])
    steps.run("cpu_repro", [py, "train.py", *common, "--repro", "--device", "cpu", "--threads",
                            settings["cpu_threads"], "--name", "cpu_repro"])
    steps.run("gpu_ordinary_a", [py, "train.py", *common, "--device", settings["gpu"],
                                 "--name", "gpu_ordinary_a"])
    steps.run("gpu_ordinary_b", [py, "train.py", *common, "--device", settings["gpu"],
                                 "--name", "gpu_ordinary_b"])
    runs = out / "runs"
    drifts = {}
    for name, a, b in (("gpu_repro", "gpu_repro_a", "gpu_repro_b"),
                       ("gpu_ordinary", "gpu_ordinary_a", "gpu_ordinary_b"),
                       ("cpu_vs_gpu", "cpu_repro", "gpu_repro_a")):
        if steps.run(f"drift_{name}", [py, "-m", "utils.drift", str(runs / a), str(runs / b),
                                       "--out", str(out / f"drift_{name}")], expect_codes=(0, 1)):
            drifts[name] = build_report([str(runs / a), str(runs / b)], 0.0)[0]["pairs"][0]
    steps.run("probe_cpu_vs_gpu", [py, "-m", "utils.probe",
                                   str(runs / "gpu_repro_a" / "weights" / "last.pt"),
                                   "--a", "device=cpu", "--b", settings["probe_b"],
                                   "--out", str(out / "probe")] +
              (["--data", settings["data"]] if settings["data"] else []), expect_codes=(0, 1))
    steps.run("benchmark", [py, "-m", "utils.benchmark", *settings["bench"], "--device",
                            settings["gpu"], "--out", str(out / "benchmark.json")])
    summary = write_summary(out, args, steps, drifts)
    print(f"summary: {summary}")
    return summary


def _last_line(run: Path) -> str:
    try:
        rows = read_results(run)
    except Exception as err:  # a failed run: say why in the table, keep writing
        return f"| {run.name} | (no results: {type(err).__name__}) | | | |"
    last = rows[-1].values
    return (f"| {run.name} | {rows[-1].epoch} | {last['mAP@0.5']:.4f} | "
            f"{last['mAP@0.5:0.95']:.4f} | {rows[-1].fingerprint} |")


def write_summary(out: Path, args, steps: Steps, drifts: dict) -> Path:
    lines = [f"# GPU check{' (dry run on the CPU)' if args.dry_run else ''}", "",
             "## Machine and software", "", "```", json.dumps(versions(), indent=1), "```", "",
             "## Steps", "", "| step | status | seconds |", "| --- | --- | --- |"]
    lines += [f"| {r['step']} | {r['status']} | {r['seconds']:.1f} |" for r in steps.records]
    lines += ["", "## Runs (last epoch)", "",
              "| run | epoch | mAP@0.5 | mAP@0.5:0.95 | fingerprint |",
              "| --- | --- | --- | --- | --- |"]
    lines += [_last_line(run) for run in sorted((out / "runs").glob("*"))]
    lines += ["", "## Drift", ""]
    for name, pair in drifts.items():
        lines.append(f"- **{name}**: {pair['headline']}")
        for metric in ("total", "mAP@0.5", "mAP@0.5:0.95"):
            if metric in pair["largest"]:
                v = pair["largest"][metric]
                lines.append(f"  - {metric}: largest |difference| {v['max_abs']:.3g} "
                             f"({v['max_rel_percent']:.3g}%) at epoch {v['epoch']}; last epoch "
                             f"{v['last_abs']:.3g}")
        differing = [d["setting"] for d in pair["settings_differences"]]
        lines.append(f"  - recorded settings that differ: {', '.join(differing) or 'none'}")
    probe_log = out / "logs" / "probe_cpu_vs_gpu.log"
    if probe_log.is_file():
        found = [line for line in probe_log.read_text().splitlines()
                 if line.startswith(("forward:", "backward:", "every layer", "loss:"))]
        lines += ["", "## Probe: CPU against GPU on the last checkpoint", ""]
        lines += [f"- {line}" for line in found] or ["- (no result: see logs/probe_cpu_vs_gpu.log)"]
    bench = out / "benchmark.json"
    if bench.is_file():
        report = json.loads(bench.read_text())
        peaks = ", ".join(f"{k} {v:.0f}" for k, v in report["matmul_gflops_per_s"].items())
        lines += ["", "## Benchmark", "", f"{report['device']}; matmul GFLOP/s: {peaks}; amp = "
                  f"{report['amp_precision']}", "",
                  "| model | px | mode | train img/s | % of matmul | data % | b1 ms/img | "
                  "b16 img/s | peak GB |", "|" + " --- |" * 9]
        for c in report["cases"]:
            lines.append(f"| {Path(c['cfg']).stem} | {c['img_size']} | {c['mode']} | "
                         f"{c['train_img_per_s']:.1f} | {c['fraction_of_matmul'] * 100:.0f} | "
                         f"{c['data_share'] * 100:.1f} | {c['infer_b1_ms_per_img']:.2f} | "
                         f"{c['infer_b16_img_per_s']:.0f} | {c['peak_memory_gb']:.2f} |")
    lines += ["", f"Total {time.time() - steps.started:.0f} s."]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    main(get_args_parser().parse_args())
