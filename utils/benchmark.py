"""Speed of training and inference on this machine: --repro fp32, ordinary fp32, and ordinary
mixed precision (amp).

    python -m utils.benchmark                                   # tiny + yolov3 at 256 and 416
    python -m utils.benchmark --cfgs cfg/yolov3-tiny.cfg --img-sizes 256 --epoch
    python -m utils.benchmark --device 0 --out bench_gpu.json

Per model, size and mode: training images/s (forward, backward, optimizer step, on data from
the built-in set), the share of a step spent waiting for data, inference ms/image and images/s
at batch 1 and 16 (in the mode's precision), peak memory, and the model's FLOP rate as a
fraction of this device's measured matrix-multiply rate in the same precision (fp32, or bf16 /
fp16 for amp). ``--epoch`` also times one real epoch of train.py in each mode. Prints a table
and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from models import Darknet
from models.darknet import count_flops
from utils.data_config import list_images, prepare_data
from utils.datasets import YoloDataset, create_dataloader
from utils.device import device_name, memory_gb, select_device
from utils.engine import build_optimizer
from utils.hyp import load_hyp
from utils.inputs import to_model_input
from utils.loss import yolo_loss
from utils.precision import AUTOCAST_DTYPES, autocast_factory, choose_precision, forward_context
from utils.repro import configure_determinism, seed_everything


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                  repeats: int = 10, trials: int = 3) -> float:
    """Measured GFLOP/s of an n x n matrix product in ``dtype``: the device's practical peak in
    that precision, the best of ``trials`` (a single trial right after start-up read 106
    instead of 193 here)."""
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
    return best


# Modes: (name, --repro, precision: "fp32" or "amp" for the device's mixed precision)
MODES = (("repro fp32", True, "fp32"), ("fp32", False, "fp32"), ("amp", False, "amp"))


def bench_training(cfg: str, img_size: int, batch_size: int, steps: int, repro: bool,
                   device: torch.device, data, workers: int, precision: str = "fp32") -> dict:
    """Training speed of ``steps`` steps after 2 warm-up steps; ``precision`` fp32, bf16 or
    fp16 (autocast for the forward pass, as train.py does)."""
    configure_determinism(repro)
    autocast = autocast_factory(precision, device)
    seed_everything(0)
    hyp = load_hyp()
    model = Darknet(cfg, num_classes=data.num_classes,
                    upsample="deterministic" if repro else "nearest")
    model.to(device, memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model, hyp, adam=False)
    files = list_images(data.train)[: batch_size * (steps + 2)]
    dataset = YoloDataset(files, data.num_classes, img_size, augment=not repro, hyp=hyp)
    loader = create_dataloader(dataset, batch_size, 0 if repro else workers, shuffle=True,
                               drop_last=True)
    waited = computed = 0.0
    images_done = 0
    tick = time.perf_counter()
    for i, (images, targets, _, _) in enumerate(loader):
        got = time.perf_counter()
        images = to_model_input(images, device)
        with forward_context(autocast):
            preds = model(images)
        loss, _ = yolo_loss([p.float() for p in preds], targets.to(device), model.anchors(),
                            model.strides(), hyp)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        done = time.perf_counter()
        if i >= 2:  # the first steps pay for allocation and kernel selection
            waited += got - tick
            computed += done - got
            images_done += len(images)
        tick = done
    flops = count_flops(model, img_size) * 3  # forward + backward (about twice the forward)
    rate = images_done / (waited + computed)
    return {"train_img_per_s": rate, "data_share": waited / (waited + computed),
            "model_gflops_per_s": flops * rate / 1e9, "peak_memory_gb": memory_gb(device),
            "timed_images": images_done, "timed_seconds": waited + computed}


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


def bench_epoch(mode: tuple[str, bool, str], device: str) -> float:
    """Seconds for one real epoch of the default training (no test pass) in ``mode``, train.py
    started as a user starts it (the interpreter's start-up included)."""
    _, repro, precision = mode
    with tempfile.TemporaryDirectory() as project:
        # Epoch 0 of a 2-epoch schedule, then stop: not the final epoch, so no test pass.
        command = [sys.executable, "train.py", "--epochs", "2", "--stop-after", "1", "--notest",
                   "--nosave", "--quiet", "--project", project, "--device", device,
                   "--amp" if precision == "amp" else "--no-amp"]
        start = time.perf_counter()
        subprocess.run(command + (["--repro"] if repro else []), check=True,
                       cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark training and inference speed.")
    parser.add_argument("--cfgs", nargs="+", default=["cfg/yolov3-tiny.cfg", "cfg/yolov3.cfg"])
    parser.add_argument("--img-sizes", nargs="+", type=int, default=[256, 416])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per case")
    parser.add_argument("--repeats", type=int, default=5, help="timed inference passes")
    parser.add_argument("--workers", type=int, default=2, help="loader workers without --repro")
    parser.add_argument("--device", default="")
    parser.add_argument("--data", default="data/shapes.data")
    parser.add_argument("--epoch", action="store_true",
                        help="also time one real epoch of train.py in each mode")
    parser.add_argument("--out", default="benchmark.json")
    return parser


def main(args: argparse.Namespace) -> dict:
    device = select_device(args.device)
    data = prepare_data(args.data)
    amp, why = choose_precision(None, False, device)
    peaks = {"fp32": matmul_gflops(device)}
    if amp != "fp32":
        peaks[amp] = matmul_gflops(device, AUTOCAST_DTYPES[amp])
    report = {"device": device_name(device), "threads": torch.get_num_threads(),
              "torch": str(torch.__version__), "amp_precision": amp, "amp_reason": why,
              "matmul_gflops_per_s": peaks, "cases": []}
    print(f"{report['device']}, {report['threads']} threads; 2048x2048 matmul: "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
          + f"; amp = {amp} ({why})")
    print(f"{'model':>12} {'px':>4} {'mode':>10} {'train img/s':>11} {'data %':>6} "
          f"{'% of matmul':>11} {'b1 ms/img':>9} {'b16 img/s':>9} {'peak GB':>7}")
    for cfg in args.cfgs:
        for size in args.img_sizes:
            for mode in MODES:
                report["cases"].append(bench_case(cfg, size, mode, amp, peaks, device, data, args))
    if args.epoch:
        report["epoch_seconds"] = {mode[0]: bench_epoch(mode, args.device) for mode in MODES}
        print("one epoch of the default training: " + ", ".join(
            f"{name} {seconds:.1f} s" for name, seconds in report["epoch_seconds"].items()))
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return report


def bench_case(cfg: str, size: int, mode: tuple[str, bool, str], amp: str, peaks: dict,
               device: torch.device, data, args) -> dict:
    """One row of the table: training and inference speed of one model, size and mode."""
    name, repro, precision = mode
    precision = amp if precision == "amp" else precision
    case = {"cfg": cfg, "img_size": size, "mode": name, "repro": repro, "precision": precision}
    case.update(bench_training(cfg, size, args.batch_size, args.steps, repro, device, data,
                               args.workers, precision))
    case.update(bench_inference(cfg, size, 1, device, data.num_classes, args.repeats * 4,
                                precision))
    case.update(bench_inference(cfg, size, 16, device, data.num_classes, args.repeats,
                                precision))
    case["fraction_of_matmul"] = case["model_gflops_per_s"] / peaks[precision]
    print(f"{Path(cfg).stem:>12} {size:>4} {name:>10} {case['train_img_per_s']:>11.1f} "
          f"{case['data_share'] * 100:>6.1f} {case['fraction_of_matmul'] * 100:>11.0f} "
          f"{case['infer_b1_ms_per_img']:>9.1f} {case['infer_b16_img_per_s']:>9.1f} "
          f"{case['peak_memory_gb']:>7.2f}", flush=True)
    return case


if __name__ == "__main__":
    main(get_args_parser().parse_args())
