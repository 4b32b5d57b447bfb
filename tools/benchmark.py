"""Speed of training and inference on this machine: --repro fp32, ordinary fp32, and ordinary
mixed precision (amp). The training rows time train.py's own step (built by the same
``training_setup.build_training``: optimizer, EMA, precision, loss, loader workers).

    python -m tools.benchmark                                   # tiny + yolov3 at 256 and 416
    python -m tools.benchmark --cfgs cfg/yolov3-tiny.cfg --img-sizes 256 --epoch
    python -m tools.benchmark --device 0 --out bench_gpu.json
    python -m tools.benchmark --roofline --cfgs cfg/yolov3-tiny.cfg --img-sizes 224 --batch-size 8

Per model, size and mode: training images/s (forward, backward, optimizer step, on data from
the built-in set), the share of a step spent waiting for data, inference ms/image and images/s
at batch 1 and 16 (in the mode's precision), peak memory, and the model's FLOP rate as a
fraction of this device's measured matrix-multiply rate in the same precision (fp32, or bf16 /
fp16 for amp). ``--epoch`` also times one real epoch of train.py in each mode. Prints a table
and writes JSON. ``--roofline`` instead profiles train.py's step per layer against the floor
this machine's measured matmul rate and memory bandwidth set (``tools.roofline``; JSON at
``--out``, default roofline.json, plot beside it).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from models import Darknet
from models.darknet import count_flops
from tools.roofline import Rates, format_roofline, profile_step, roofline_report, write_roofline
from utils.base.device import add_device_argument, device_name, memory_gb, select_device
from utils.base.errors import InputError, report_input_error
from utils.data.data_config import list_images, prepare_data
from utils.data.hyp import DEFAULT_HYP
from utils.data.inputs import to_model_input
from utils.engine.loop import train_one_epoch
from utils.engine.options import options_parser, resolve_options
from utils.engine.precision import (
    AUTOCAST_DTYPES,
    autocast_factory,
    choose_precision,
    forward_context,
)
from utils.engine.training_setup import build_training


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None,
                  repeats: int = 10, trials: int = 3, tf32: bool = False) -> float:
    """Measured GFLOP/s of an n x n matrix product in ``dtype`` (``tf32``: fp32 inputs on a
    GPU's TF32 path): the device's practical peak in that precision, the best of ``trials`` (a
    single trial right after start-up read 106 instead of 193 here). n defaults to 2048 on a
    CPU and 8192 on a GPU, where a smaller product does not fill the multiprocessors."""
    n = n or (8192 if device.type == "cuda" else 2048)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(trials):
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9)
    torch.backends.cuda.matmul.allow_tf32 = previous
    return best


def memory_bandwidth(device: torch.device, nbytes: int, repeats: int = 5, trials: int = 5
                     ) -> float:
    """Measured GB/s of copying an fp32 tensor of ``nbytes`` into another (counted as its
    bytes read plus its bytes written, the way the roofline counts a layer's traffic), the
    best of ``trials``. A copy, not an add: it is the plainest traffic, with no arithmetic
    to wait for. Its size decides which memory it measures: at the size of the step's largest
    activation it is the bandwidth those layers can see (from a cache, where it fits). A small
    tensor is copied more times, at least 64 MiB a trial, so the clock's resolution and one
    late thread do not decide the figure."""
    repeats = max(repeats, math.ceil(2 ** 26 / max(nbytes, 1)))
    source = torch.rand(max(nbytes // 4, 1), device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    best = 0.0
    for _ in range(trials):
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            target.copy_(source)
        _sync(device)
        best = max(best, 2 * source.numel() * 4 * repeats / (time.perf_counter() - start) / 1e9)
    return best


# Modes: (name, train.py's flags for it)
MODES = (("repro fp32", ("--repro",)), ("fp32", ("--no-amp",)), ("amp", ("--amp",)))
# --portable needs its variables at interpreter start: timed as a whole epoch of train.py only.
EPOCH_MODES = (*MODES, ("portable fp32", ("--portable",)))
# The roofline's: train.py as a user starts it (mixed precision where native), and --repro.
ROOFLINE_MODES = (("default", ()), ("repro", ("--repro",)))
# Far beyond any CPU's last-level cache (480 MiB here): what main memory sustains.
DRAM_PROBE_BYTES = 2 ** 30


def _subset_data(data, count: int, folder: Path) -> Path:
    """A .data file in ``folder`` whose training list is the first ``count`` images of
    ``data``'s (validation: the same, never used here)."""
    files = list_images(data.train, data.path, data.lines.get("train"))[:count]
    (folder / "train.txt").write_text("".join(f"{f.resolve()}\n" for f in files))
    (folder / "bench.names").write_text("\n".join(data.names) + "\n")
    path = folder / "bench.data"
    path.write_text(f"classes={data.num_classes}\ntrain=train.txt\nvalid=train.txt\n"
                    "names=bench.names\n")
    return path


@contextlib.contextmanager
def built_training(cfg: str, img_size: int, batch_size: int, images: int,
                   flags: tuple[str, ...], device: str, data, workers: int | None = None):
    """train.py's Training (``build_training``: plan, loader, optimizer, EMA, precision, loss)
    for ``cfg`` at ``img_size`` on the first ``images`` of ``data``, in a temporary folder
    that lasts as long as the context. ``flags``: train.py's options for the mode; ``workers``
    None: the plan's choice."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data_file = _subset_data(data, images, folder)
        argv = ["--cfg", cfg, "--data", str(data_file), "--hyp", str(data.hyp or DEFAULT_HYP),
                "--img-size", str(img_size), "--batch-size", str(batch_size), "--epochs", "2",
                "--project", str(folder / "runs"), "--quiet", "--nosave", "--device", device,
                *flags, *(["--workers", str(workers)] if workers is not None else [])]
        options, _, _ = resolve_options(options_parser().parse_args(argv), options_parser())
        # A --repro plan pins torch's threads; give the next case the process's own count back.
        threads = torch.get_num_threads()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield build_training(options, None, None)
        finally:
            torch.set_num_threads(threads)


def bench_training(cfg: str, img_size: int, batch_size: int, steps: int, flags: tuple[str, ...],
                   device: str, data, workers: int | None = None) -> dict:
    """Speed of train.py's own training step (its plan, loader, optimizer, EMA, precision and
    loss, through ``engine.train_one_epoch``): one epoch of 2 batches to warm up (allocation,
    kernel choice), then ``steps`` timed batches (over several epochs of the subset when it
    holds fewer)."""
    with built_training(cfg, img_size, batch_size, batch_size * steps, flags, device, data,
                        workers) as training:
        plan = training.plan
        if plan.device.type == "cuda":
            # The allocator keeps the last case's blocks reserved: give them back first, or
            # each row shows the largest case so far.
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(plan.device)
        loader = training.train_loader
        loader.batch_sampler.set_epoch(0)
        warm_up = _first_batches(loader, 2)
        _step(training, warm_up, 0)
        # The subset may hold fewer batches than ``steps`` (500 images are 31 batches of 16):
        # further epochs of it until the steps are done, every image counted as stepped.
        done, images, seconds, epoch = 0, 0, 0.0, 1
        while done < steps:
            loader.batch_sampler.set_epoch(epoch)
            batches = _first_batches(loader, steps - done)
            seconds += _step(training, batches, epoch)
            done, images, epoch = done + len(batches), images + sum(len(b[0]) for b in batches), \
                epoch + 1
        start = time.perf_counter()
        loaded = _first_batches(loader, steps)
        loading = (time.perf_counter() - start) / len(loaded)
        threads = torch.get_num_threads()  # the step's: leaving the context restores ours
    rate = images / seconds
    flops = count_flops(training.model, img_size) * 3  # forward + backward (about twice)
    return {"train_img_per_s": rate, "data_share": min(loading / (seconds / done), 1.0),
            "model_gflops_per_s": flops * rate / 1e9, "peak_memory_gb": memory_gb(plan.device),
            "timed_images": images, "timed_steps": done, "timed_seconds": seconds,
            "precision": plan.precision, "threads": threads,
            "workers": plan.workers, "optimizer": type(training.optimizer).__name__,
            "conv_tf32": plan.device.type == "cuda" and torch.backends.cudnn.allow_tf32}


def _step(training, batches: list, epoch: int) -> float:
    """Seconds for train.py's step over ``batches`` (device work waited for)."""
    plan = training.plan
    start = time.perf_counter()
    train_one_epoch(training.train_model, training.ema, training.optimizer, batches, plan.device,
                    epoch, plan.hyp["lr0"], training.settings, training.scaler)
    _sync(plan.device)
    return time.perf_counter() - start


def _first_batches(loader, count: int) -> list:
    """The first ``count`` batches of ``loader``'s epoch, loaded (timed apart from the step)."""
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


@torch.no_grad()
def bench_inference(cfg: str, img_size: int, batch_size: int, device: torch.device,
                    num_classes: int, repeats: int, precision: str = "fp32") -> dict:
    model = Darknet(cfg, num_classes=num_classes).to(device, memory_format=torch.channels_last)
    model.eval()
    x = to_model_input(torch.zeros(batch_size, 3, img_size, img_size, dtype=torch.uint8), device)
    autocast = autocast_factory(precision, device)

    def forward():
        with forward_context(autocast):
            model(x)

    for _ in range(2):
        forward()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        forward()
    _sync(device)
    seconds = (time.perf_counter() - start) / repeats
    return {f"infer_b{batch_size}_ms_per_img": seconds / batch_size * 1000,
            f"infer_b{batch_size}_img_per_s": batch_size / seconds}


def bench_epoch(mode: tuple[str, tuple[str, ...]], device: str, workers: int | None) -> float:
    """Seconds for one real epoch of the default training (no test pass) in ``mode``, train.py
    started as a user starts it (the interpreter's start-up included)."""
    _, flags = mode
    with tempfile.TemporaryDirectory() as project:
        # Epoch 0 of a 2-epoch schedule, then stop: not the final epoch, so no test pass.
        command = [sys.executable, "train.py", "--epochs", "2", "--stop-after", "1", "--notest",
                   "--nosave", "--quiet", "--project", project, "--device", device, *flags,
                   *(["--workers", str(workers)] if workers is not None else [])]
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark training and inference speed.")
    parser.add_argument("--cfgs", nargs="+", default=["cfg/yolov3-tiny.cfg", "cfg/yolov3.cfg"])
    parser.add_argument("--img-sizes", nargs="+", type=int, default=[256, 416])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed training steps per case (default 6 on a CPU, 50 on a GPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed inference passes")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers (default: a worker per CPU core on a GPU, else "
                             "train.py's choice for the mode)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads, as train.py's --threads (default: the mode's). On "
                             "cores that other jobs share, 1 thread waits for no other thread")
    add_device_argument(parser)
    parser.add_argument("--data", default="data/shapes.data")
    parser.add_argument("--epoch", action="store_true",
                        help="also time one real epoch of train.py in each mode")
    parser.add_argument("--out", default=None,
                        help="the JSON written (default benchmark.json, or roofline.json with "
                             "--roofline, its plot beside it as .png)")
    parser.add_argument("--roofline", action="store_true",
                        help="instead of the table: per layer of train.py's step, measured "
                             "time against the floor this machine's matmul rate and memory "
                             "bandwidth set (default and --repro modes)")
    parser.add_argument("--compile", action="store_true",
                        help="train.py's --compile in every training row and epoch (compiled "
                             "in the warm-up batches, not timed; --epoch counts it)")
    parser.add_argument("--modes", nargs="+", choices=[name for name, _ in ROOFLINE_MODES],
                        default=None,
                        help="--roofline's modes: train.py's default, and --repro")
    return parser


def matmul_peaks(device: torch.device, amp: str) -> dict[str, float]:
    """The matmul rate of each precision a mode can compute in: fp32 (TF32 off), and on a GPU
    TF32 (what ordinary fp32 convolutions use there), then the mixed precision's dtype."""
    peaks = {"fp32": matmul_gflops(device)}
    if device.type == "cuda":
        peaks["tf32"] = matmul_gflops(device, tf32=True)
    if amp != "fp32":
        peaks[amp] = matmul_gflops(device, AUTOCAST_DTYPES[amp])
    return peaks


def default_workers(workers: int | None, device: torch.device) -> int | None:
    """The loader workers of every case: as given; on a GPU one per CPU core, so that the
    data share says whether this machine's cores can feed the step (train.py itself uses up
    to 8, and 0 under --repro); else None, train.py's choice for the mode."""
    if workers is not None or device.type != "cuda":
        return workers
    return os.cpu_count() or 1


def main(args: argparse.Namespace) -> dict:
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads {args.threads}: must be at least 1")
    if args.modes is not None and not args.roofline:
        raise InputError("--modes chooses --roofline's modes; the table runs every mode "
                         "(add --roofline, or drop --modes)")
    if args.compile and args.roofline:
        raise InputError("--roofline times each layer by hooks, which a compiled model runs "
                         "inside its own kernels: drop --compile or --roofline")
    device = select_device(args.device)
    workers = default_workers(args.workers, device)
    data = prepare_data(args.data)
    if args.threads:
        torch.set_num_threads(args.threads)  # the matmul rate at the steps' thread count
    if args.roofline:
        return main_roofline(args, device, data, workers)
    amp, why = choose_precision(None, False, device)
    peaks = matmul_peaks(device, amp)
    steps = args.steps or (50 if device.type == "cuda" else 6)
    report = {"device": device_name(device), "threads": torch.get_num_threads(),
              "torch": str(torch.__version__), "amp_precision": amp, "amp_reason": why,
              "compile": args.compile,
              "matmul_gflops_per_s": peaks, "steps": steps, "cases": []}
    print(f"{report['device']}, {report['threads']} threads; matmul: "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
          + f"; amp = {amp} ({why}); {steps} timed steps a case"
          + ("; models compiled (--compile)" if args.compile else ""))
    print(f"{'model':>12} {'px':>4} {'mode':>10} {'train img/s':>11} {'data %':>6} "
          f"{'% of matmul':>11} {'b1 ms/img':>9} {'b16 img/s':>9} {'peak GB':>7}  workers")
    for cfg in args.cfgs:
        for size in args.img_sizes:
            for mode in MODES:
                report["cases"].append(bench_case(cfg, size, mode, peaks, device, data, steps,
                                                  workers, args))
    if args.epoch:
        report["epoch_seconds"] = {name: bench_epoch((name, _train_flags(flags, args)),
                                                     args.device, args.workers)
                                   for name, flags in EPOCH_MODES}
        print("one epoch of the default training: " + ", ".join(
            f"{name} {seconds:.1f} s" for name, seconds in report["epoch_seconds"].items()))
    out = Path(args.out or "benchmark.json")
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return report


def _train_flags(flags: tuple[str, ...], args: argparse.Namespace) -> tuple[str, ...]:
    """A mode's train.py options plus the benchmark's --threads and --compile (which
    --portable refuses: its epoch runs eagerly, as it must)."""
    extra = ("--threads", str(args.threads)) if args.threads else ()
    if args.compile and "--portable" not in flags:
        extra += ("--compile",)
    return (*flags, *extra)


def bench_case(cfg: str, size: int, mode: tuple[str, tuple[str, ...]], peaks: dict,
               device: torch.device, data, steps: int, workers: int | None, args) -> dict:
    """One row of the table: training and inference speed of one model, size and mode. The
    "% of matmul" is against the rate of the arithmetic the convolutions ran in: TF32 for an
    ordinary fp32 run on a GPU (the row says so)."""
    name, flags = mode
    case = {"cfg": cfg, "img_size": size, "mode": name, "repro": "--repro" in flags}
    case.update(bench_training(cfg, size, args.batch_size, steps, _train_flags(flags, args),
                               args.device or "", data, workers))
    precision = case["precision"]
    case.update(bench_inference(cfg, size, 1, device, data.num_classes, args.repeats * 4,
                                precision))
    case.update(bench_inference(cfg, size, 16, device, data.num_classes, args.repeats,
                                precision))
    peak = "tf32" if precision == "fp32" and case["conv_tf32"] else precision
    case["fraction_of_matmul"] = case["model_gflops_per_s"] / peaks[peak]
    print(f"{Path(cfg).stem:>12} {size:>4} {name:>10} {case['train_img_per_s']:>11.1f} "
          f"{case['data_share'] * 100:>6.1f} {case['fraction_of_matmul'] * 100:>11.0f} "
          f"{case['infer_b1_ms_per_img']:>9.1f} {case['infer_b16_img_per_s']:>9.1f} "
          f"{case['peak_memory_gb']:>7.2f}  {case['workers']}"
          + (" (convolutions in TF32)" if peak == "tf32" else ""), flush=True)
    return case


def main_roofline(args: argparse.Namespace, device: torch.device, data,
                  workers: int | None) -> dict:
    report = {"device": device_name(device), "torch": str(torch.__version__), "cases": []}
    for cfg in args.cfgs:
        for size in args.img_sizes:
            for mode in (m for m in ROOFLINE_MODES if m[0] in (args.modes or [m[0]])):
                case = roofline_case(cfg, size, mode, data, workers, args)
                report["cases"].append(case)
                print(format_roofline(case), flush=True)
    out = Path(args.out or "roofline.json")
    plot = write_roofline(report, out)
    print(f"wrote {out} and {plot}")
    return report


def roofline_case(cfg: str, size: int, mode: tuple[str, tuple[str, ...]], data,
                  workers: int | None, args) -> dict:
    """The roofline of one model, size and mode: the step profiled (2 batches to warm up,
    then ``--steps``), then this machine's rates measured at the step's precision and thread
    count. Where gradients accumulate over more batches than are timed, the optimizer steps
    more often than in training (once at the epoch's end): ``optimizer_steps`` says so."""
    name, flags = mode
    steps = args.steps or 6
    with built_training(cfg, size, args.batch_size, args.batch_size * steps,
                        _train_flags(flags, args), args.device or "", data,
                        workers) as training:
        plan, loader = training.plan, training.train_loader
        loader.batch_sampler.set_epoch(0)
        warm_up = _first_batches(loader, 2)
        loader.batch_sampler.set_epoch(1)
        profile = profile_step(training, warm_up, _first_batches(loader, steps))
        # The rates inside the context: at the thread count the step ran at (a --repro plan
        # pins its own; leaving the context gives the process's back).
        threads = torch.get_num_threads()
        precision = plan.precision
        tf32 = precision == "fp32" and plan.device.type == "cuda" and \
            torch.backends.cudnn.allow_tf32
        matmul = matmul_gflops(plan.device, AUTOCAST_DTYPES.get(precision, torch.float32),
                               trials=5, tf32=tf32)
        # A copy the size of the largest activation can only be as fast as main memory or
        # faster; where it read slower, other jobs took the cores during it, and main memory's
        # rate is the truer figure for it.
        activations = memory_bandwidth(plan.device, profile.largest_tensor_bytes, trials=10)
        dram = memory_bandwidth(plan.device, DRAM_PROBE_BYTES, repeats=1, trials=3)
    case = {"cfg": cfg, "img_size": size, "batch_size": args.batch_size, "mode": name,
            "precision": precision + (" (TF32 convolutions)" if tf32 else ""),
            "threads": threads, "optimizer": type(training.optimizer).__name__,
            "accumulate": plan.accumulate,
            "title": f"{Path(cfg).stem} {size} px batch {args.batch_size}, {name} ({precision})",
            "bandwidth_probe_bytes": profile.largest_tensor_bytes,
            "activation_gbytes": activations, "dram_gbytes": dram}
    rates = Rates(matmul, max(activations, dram))
    case.update(roofline_report(profile, rates))
    return case


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except InputError as err:
        sys.exit(report_input_error(err))
