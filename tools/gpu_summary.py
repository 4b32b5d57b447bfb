"""The Markdown summary of one attempt of ``tools.gpu_check``: every step with its status,
the machine, the runs' last epochs, the drift reports, the probes and the benchmark rows.

Written from whatever exists at the moment it is called (a step may still be running, or
never have run): a missing or unreadable result is named in its place, never a reason to
stop writing.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from tools.drift import build_report
from utils.base.step_runner import StepRunner
from utils.engine.results import read_results

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
                   drifts: tuple[tuple[str, str, str], ...]) -> str:
    """``drifts``: (name, run a, run b) of each drift step ``drift_<name>``."""
    lines = [f"# GPU check, {attempt.name}{' (dry run on the CPU)' if dry_run else ''}", "",
             _state(runner), "", "## Steps", "", "| step | status | seconds | limit s |",
             "| --- | --- | --- | --- |"]
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
        if runner.record(f"drift_{name}").ok:
            lines += _drift_lines(name, attempt / "runs" / a, attempt / "runs" / b)
    for name, title in PROBES:
        log = attempt / "logs" / f"{name}.log"
        if runner.record(name).ok and log.is_file():
            found = [line for line in log.read_text().splitlines()
                     if line.startswith(PROBE_LINES)]
            lines += ["", f"## Probe: {title}", ""]
            lines += [f"- {line}" for line in found] or [f"- (no result: see logs/{log.name})"]
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
    except Exception as err:  # the step said ok, its inputs changed since: name it
        return [f"- **{name}**: (no report: {type(err).__name__}: {err})"]
    lines = [f"- **{name}** ({a.name} vs {b.name}): {pair['headline']}"]
    for metric in ("total", "mAP@0.5", "mAP@0.5:0.95"):
        if metric in pair["largest"]:
            v = pair["largest"][metric]
            lines.append(f"  - {metric}: largest |difference| {v['max_abs']:.3g} "
                         f"({v['max_rel_percent']:.3g}%) at epoch {v['epoch']}; last epoch "
                         f"{v['last_abs']:.3g}")
    differing = [d["setting"] for d in pair["settings_differences"]]
    lines.append(f"  - recorded settings that differ: {', '.join(differing) or 'none'}")
    return lines


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
