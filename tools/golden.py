"""Evidence across machines: a small --portable training's per-epoch fingerprints, recorded
per machine in tests/golden/portable.json, rerun and compared here.

    python -m tools.golden                 # rerun; compare with this machine's record
    python -m tools.golden --record        # add (or refresh) this machine's record
    python -m tools.golden --device cuda --record --file runs/gpu_check/golden.json   # a GPU's
    python -m tools.golden --trace                 # only the layer trace, as JSON

A record is keyed by everything that can pick a kernel, not the model name: on the CPU the
vendor, family/model/stepping, kernel flags, cache sizes and thread count; on a GPU the GPU's
name and compute capability and the torch, CUDA and cuDNN versions (not the host's CPU). On a
machine already in the file (under the same kernel variables) the bits must match ("same
bits as recorded on ..."); on a new one the run is compared with every record, nearest key
first, and reported without failing: the same bits as another CPU's is the portability the mode
promises. A record of the same GPU model under another torch, CUDA or cuDNN is reported as
"another torch/CUDA/cuDNN than the record: not comparable", never as a failure. Each record
also holds a layer trace: one forward and backward pass of fixed, committed weights
(tests/data/run_before_plan) on the small set's first batch, hashed per layer. Weights and
input are the same on every machine, so when two records part the trace names the first layer
whose arithmetic differs, without the other machine at hand. On the CPU the trace is also
taken at 1 thread and must equal the 2-thread one (--portable's bits do not depend on the
count, docs/threads.md); a record of another --portable recipe is reported as such, never
failed. On a GPU the training is --repro (portable is a CPU mode): same-model GPUs under the
same software must match; against a CPU it is drift.

Exit status: 0 same bits as this machine's record (or a new machine, reported), 1 this
machine's record differs, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from utils.base.atomic_io import atomic_write_text
from utils.base.device import add_device_argument
from utils.base.errors import InputError, report_input_error
from utils.base.machine import gpu_software, machine_key
from utils.base.repro import PORTABLE_ENVIRONMENT, PORTABLE_RECIPE
from utils.data.hyp import SCRATCH_HYP
from utils.engine.results import read_results

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "portable.json"
MICRO_CFG = ROOT / "tests" / "data" / "micro.cfg"
# The small training: seconds on 2 cores, long enough for rounding to compound over 3 epochs.
TRAIN_ARGS = ("--cfg", str(MICRO_CFG), "--img-size", "64", "--batch-size", "4", "--epochs", "3",
              "--threads", "2", "--quiet", "--nosave")
# Fixed weights for the layer trace: committed, so every machine starts from the same bits.
# The trace runs at the record's 2 threads and, on the CPU, at 1 too: --portable promises the
# same bits at any thread count (docs/threads.md).
TRACE_THREADS = (2, 1)
TRACE_WEIGHTS = ROOT / "tests" / "data" / "run_before_plan" / "weights" / "last.pt"


def small_data(folder: Path) -> Path:
    """The small set (16 + 8 images of 64 px, seed 0) under ``folder``; its .data file."""
    from utils.data.shapes import CLASS_NAMES, generate_shapes
    data_root = folder / "data"
    generate_shapes(data_root, n_train=16, n_val=8, size=64, seed=0)
    (data_root / "shapes.names").write_text("\n".join(CLASS_NAMES) + "\n")
    data = data_root / "small.data"
    # The recipe the records were made with, named: a .data file without hyp= gets the own-data
    # default, which may change; the records must not.
    data.write_text(f"classes={len(CLASS_NAMES)}\ntrain=images/train\nvalid=images/val\n"
                    f"names=shapes.names\nhyp={SCRATCH_HYP}\n")
    return data


def _run(command: list[str], env: dict | None = None) -> str:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[1:3])} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def run_small_training(device: str, folder: Path) -> dict:
    """Train the small set once in a fresh interpreter (so --portable's variables take effect)
    and return its record: mode, per-epoch fingerprints, the layer trace, the machine."""
    data = small_data(folder)
    mode = "portable" if device == "cpu" else "repro"
    _run([sys.executable, "train.py", *TRAIN_ARGS, "--data", str(data), "--device", device,
          "--project", str(folder / "runs"), "--name", "golden", f"--{mode}"])
    # The trace runs under the variables the training ran under (set here, before start).
    env = dict(os.environ, PYTHONHASHSEED="0",
               **(PORTABLE_ENVIRONMENT if mode == "portable" else {}))
    traces = [json.loads(_run([sys.executable, "-m", "tools.golden", "--trace", "--device",
                               device, "--data", str(data), "--threads", str(threads)],
                              env).splitlines()[-1])
              for threads in (TRACE_THREADS if mode == "portable" else TRACE_THREADS[:1])]
    trace = traces[0]
    run = folder / "runs" / "golden"
    environment = yaml.safe_load((run / "repro.yaml").read_text())["environment"]
    record = {"mode": mode, "fingerprints": [r.fingerprint for r in read_results(run)],
              "trace": trace, "machine": environment["machine"],
              "versions": {k: environment.get(k) for k in ("torch", "python", "numpy")}}
    if mode == "portable":
        record["recipe"] = PORTABLE_RECIPE
        # Where the trace at another thread count first parts from the record's (None: the
        # same bits), checked by compare() on this machine and kept out of the file.
        record["threads_check"] = {threads: first_trace_difference(trace, other) for threads,
                                   other in zip(TRACE_THREADS[1:], traces[1:])}
    record["key"] = machine_key(record["machine"], record["versions"])
    return record


def layer_trace(data: Path, device: str, threads: int = 2) -> dict:
    """One forward and backward pass of :data:`TRACE_WEIGHTS` on the small set's first batch,
    as the record's mode computes it (``threads`` threads, deterministic; on the CPU
    --portable's kernels), hashed: the model input, each layer's output and its parameters'
    gradients, and the loss (as a hex float)."""
    import torch

    from tools.probe import digest, fixed_batch, run_pass
    from utils.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(TRACE_WEIGHTS)
    images, targets = fixed_batch(ckpt, str(data), 4)
    trace = run_pass(ckpt, images, targets, {"device": device, "threads": threads, "repro": 1,
                                             "portable": int(device == "cpu")})
    grads = [digest(torch.cat([g.flatten() for g in trace.param_grads[i]]))
             if i in trace.param_grads else None for i in range(len(trace.outputs))]
    return {"input": digest(trace.model_input), "loss": float(trace.loss).hex(),
            "types": trace.types, "outputs": [digest(o) for o in trace.outputs],
            "grads": grads}


def first_trace_difference(a: dict, b: dict) -> str | None:
    """Where two layer traces first part: the input, a layer's forward output (the first, in
    order), a layer's gradients (backward runs last layer first, so the highest-index one), the
    loss; None when every digest agrees."""
    if a["input"] != b["input"]:
        return "the model input (the pixels already differ)"
    for i, (x, y) in enumerate(zip(a["outputs"], b["outputs"])):
        if x != y:
            return f"layer {i} ({a['types'][i]}), forward"
    if a["loss"] != b["loss"]:
        return "the loss (every layer's output agrees)"
    differ = [i for i, (x, y) in enumerate(zip(a["grads"], b["grads"])) if x != y]
    if differ:
        return f"layer {differ[-1]} ({a['types'][differ[-1]]}), backward"
    return None


def load_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text())["records"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"not a golden record file ({err})", path) from None
    return records


def first_difference(a: list[str], b: list[str]) -> int | None:
    """The first epoch whose fingerprints differ; None when they agree throughout."""
    for epoch, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return epoch
    return None if len(a) == len(b) else min(len(a), len(b))


def differing_settings(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The recorded machine settings that differ between two records' ``machine``."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differing_settings(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} vs {vb!r}")
    return out


def _nearness(a: str, b: str) -> int:
    return sum(x == y for x, y in zip(a.split(" | "), b.split(" | ")))


def _recipe(record: dict) -> dict:
    """The kernel variables and --portable recipe a record was made under (a recipe change
    moves every bit; records from before the recipe was numbered are recipe 1)."""
    recipe = dict(record["machine"].get("variables", {}))
    if record["mode"] == "portable":
        recipe["recipe"] = record.get("recipe", 1)
    return recipe


def other_recipe(record: dict, other: dict) -> str | None:
    """The kernel variables and --portable recipe that differ between two records
    ("recipe 1 vs 2"), None when they agree: another recipe computes other bits by design."""
    ours, theirs = _recipe(record), _recipe(other)
    differ = [f"{k} {theirs.get(k)!r} vs {ours.get(k)!r}" for k in sorted(set(ours) | set(theirs))
              if ours.get(k) != theirs.get(k)]
    return ", ".join(differ) or None


def _gpu(record: dict) -> tuple | None:
    """A GPU record's GPU (name, compute capability); None for a CPU record."""
    gpu = record["machine"].get("gpu")
    return (gpu.get("name"), gpu.get("compute_capability")) if gpu else None


def other_software(record: dict, other: dict) -> str | None:
    """For two records of one GPU model: the torch, CUDA and cuDNN versions that differ
    ("torch 2.11.0 vs 2.14.1"), None when they agree. Another version is another set of
    kernels and heuristics: its bits are no evidence either way."""
    if _gpu(record) is None or _gpu(record) != _gpu(other):
        return None
    ours, theirs = (gpu_software(r["machine"]["gpu"], (r.get("versions") or {}).get("torch"))
                    for r in (record, other))
    differ = [f"{k} {ours[k]} vs {theirs[k]}" for k in ours if ours[k] != theirs[k]]
    return ", ".join(differ) or None


def compare(record: dict, records: list[dict]) -> tuple[int, list[str]]:
    """(exit status, lines to print) for ``record`` against the file's ``records``. Only a
    record of this machine (a GPU: this GPU model under the same torch, CUDA and cuDNN) under
    the same kernel variables can fail the check; the same GPU model under other software is
    said to be not comparable."""
    same_mode = [r for r in records if r["mode"] == record["mode"]]
    own = [r for r in same_mode if r["key"] == record["key"] and _recipe(r) == _recipe(record)]
    lines, status = [], 0
    for threads, part in (record.get("threads_check") or {}).items():
        if part is not None:
            status = 1
            lines.append(f"THREAD COUNT CHANGES THE BITS: the trace at {threads} thread(s) first "
                         f"differs from {TRACE_THREADS[0]} threads' at {part}")
        else:
            lines.append(f"the trace at {threads} thread(s) is the same as at "
                         f"{TRACE_THREADS[0]}, every layer")
    if not own:
        lines.append(f"new machine: {record['key']} (no record under these kernel variables "
                     "and recipe yet; --record adds it)")
    for other in sorted(same_mode, key=lambda r: -_nearness(r["key"], record["key"])):
        recipe = other_recipe(record, other)
        if recipe:
            lines.append(f"recorded under another recipe than this run's, {other['key']} "
                         f"({recipe}): its bits are no evidence either way")
            continue
        software = other_software(record, other)
        if software:
            lines.append(f"another torch/CUDA/cuDNN than the record of {other['key']} "
                         f"({software}): not comparable")
            continue
        where = first_difference(record["fingerprints"], other["fingerprints"])
        name = other["machine"]["cpu"].get("model_name") if "gpu" not in other["machine"] \
            else other["machine"]["gpu"]["name"]
        part = first_trace_difference(record["trace"], other["trace"]) \
            if "trace" in record and "trace" in other else None
        if where is None and part is None:
            lines.append(f"same bits as recorded on {name} [{other['key']}]"
                         + (", and every layer of the trace agrees"
                            if "trace" in record and "trace" in other else ""))
            continue
        if where is None:
            status = 1 if other in own else status
            lines.append(f"same fingerprints as recorded on {name} [{other['key']}], but the "
                         f"layer trace first differs at {part}")
            continue
        if other in own:
            status = 1
        lines.append(f"{'DIFFERS from this machine' if other in own else 'differs from'} "
                     f"{name}'s record [{other['key']}] from epoch {where}")
        if "trace" in record and "trace" in other:
            lines.append(f"  on the same weights and batch: "
                         f"{'first differs at ' + part if part else 'every layer agrees'}")
        for setting in differing_settings(record["machine"], other["machine"]):
            lines.append(f"  recorded setting that differs: {setting}")
    return status, lines


def add_record(path: Path, record: dict) -> None:
    """Add ``record`` to the file, replacing an older one of the same machine, mode and
    recipe (another recipe's record stays: the evidence of that recipe)."""
    records = [r for r in load_records(path)
               if not (r["key"] == record["key"] and r["mode"] == record["mode"]
                       and _recipe(r) == _recipe(record))]
    records.append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"records": records}, indent=1) + "\n")


def _cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Rerun the small --portable training and "
                                                 "compare its bits with the recorded machines.")
    parser.add_argument("--record", action="store_true", help="add this machine's result")
    parser.add_argument("--file", default=str(GOLDEN), help="the record file")
    add_device_argument(parser, default="cpu", help="cpu (--portable) or cuda (--repro)")
    parser.add_argument("--threads", type=int, default=TRACE_THREADS[0],
                        help="with --trace: torch's CPU threads")
    parser.add_argument("--trace", action="store_true",
                        help="print only the layer trace as JSON (run under the record's "
                             "variables; the check runs it itself)")
    parser.add_argument("--data", help="with --trace: the small set's .data file")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.trace:
        with tempfile.TemporaryDirectory() as folder:
            data = Path(args.data) if args.data else small_data(Path(folder))
            print(json.dumps(layer_trace(data, args.device, args.threads)))
        return 0
    path = Path(args.file)
    try:
        if args.device not in ("cpu", "cuda"):
            raise InputError(f"--device {args.device!r}: expected cpu or cuda")
        if args.device == "cuda" and not _cuda_available():
            raise InputError("--device cuda: no CUDA GPU here")
        records = load_records(path)
    except InputError as err:
        return report_input_error(err)
    with tempfile.TemporaryDirectory() as folder:
        record = run_small_training(args.device, Path(folder))
    print(f"this machine: {record['key']} ({record['mode']}); fingerprints "
          + " ".join(record["fingerprints"]))
    status, lines = compare(record, records)
    print("\n".join(lines))
    if args.record:
        record.pop("threads_check", None)
        add_record(path, record)
        print(f"recorded in {path}")
    return status


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
