"""Train a YOLOv3-family model from a darknet cfg.

    python train.py                                  # yolov3-tiny on the built-in shapes set
    python train.py --repro --device cpu             # the same bits every run
    python train.py --resume runs/train/exp          # continue an interrupted run exactly
    python train.py --cfg cfg/yolov3.cfg --data my.data --epochs 100 --batch-size 16
    torchrun --nproc_per_node 2 train.py --device cpu --repro   # DDP; --batch-size is global

Each run writes runs/train/<name>/: results.txt, results.png, weights/last.pt, weights/best.pt,
opt.yaml, hyp.yaml, repro.yaml, train_batch0.jpg, val_predictions.jpg.
"""
from __future__ import annotations

import argparse
import functools
import signal
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from utils.atomic_io import atomic_same_file, atomic_torch_save
from utils.checkpoint import load_state_checked, training_checkpoint
from utils.device import select_device
from utils.distributed import barrier, broadcast_object, init_distributed, shutdown
from utils.ema import ModelEMA
from utils.engine import (
    EpochStats,
    LoopSettings,
    NonFiniteLoss,
    Training,
    build_optimizer,
    fitness,
    train_one_epoch,
)
from utils.errors import run_script
from utils.evaluation import evaluate
from utils.hyp import DEFAULT_HYP, scale_hyp
from utils.options import REPRO_THREADS, check_args, resume_args
from utils.precision import autocast_factory, choose_precision, make_grad_scaler
from utils.repro import set_rng_state, state_fingerprint
from utils.restart import restart_with_fixed_hash_seed
from utils.results import format_line, plot_results, write_results
from utils.run_record import (
    check_inputs_unchanged,
    environment,
    input_digests,
    next_run_dir,
    record_resume,
    write_run_records,
)
from utils.schedule import cosine_factor
from utils.training_setup import build_loaders, build_model, prepare_data_once, resolve_settings


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train YOLOv3 from a darknet cfg.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cfg", default="cfg/yolov3-tiny.cfg", help="darknet model cfg")
    p.add_argument("--data", default="data/shapes.data", help=".data file")
    p.add_argument("--hyp", default=None,
                   help="hyperparameter yaml (default: the .data file's hyp=, else "
                        f"{DEFAULT_HYP.name})")
    # The defaults train the built-in set to mAP@0.5 > 0.8 in under 5 minutes on 2 CPU cores.
    p.add_argument("--epochs", type=int, default=17)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--img-size", type=int, default=224, help="train and test size (pixels)")
    p.add_argument("--weights", default="",
                   help="initial weights: a .pt, a darknet file or a backbone cut (*.conv.N)")
    p.add_argument("--device", default="", help="cpu, 0, or empty for automatic")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers (default: 0 on the CPU when the images fit in "
                        "memory, else 2; up to 8 on a GPU; 0 under --repro)")
    p.add_argument("--threads", type=int, default=None,
                   help=f"CPU threads for torch (default all, or {REPRO_THREADS} under --repro)")
    p.add_argument("--project", default="runs/train", help="folder of run folders")
    p.add_argument("--name", default="exp", help="run folder name (exp, exp2, ... if taken)")
    p.add_argument("--resume", default="", help="a run folder or its weights/last.pt")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many epochs of the schedule (resume later)")
    p.add_argument("--nosave", action="store_true", help="only save the final checkpoint")
    p.add_argument("--notest", action="store_true", help="only evaluate after the last epoch")
    p.add_argument("--multi-scale", action="store_true",
                   help="resize each batch to a random multiple of 32 within 0.5x..1.5x")
    p.add_argument("--rect", action="store_true", help="rectangular batches")
    p.add_argument("--cache-images", action="store_true", default=None,
                   help="keep decoded images in RAM (automatic for sets under 1 GiB)")
    p.add_argument("--adam", action="store_true", help="Adam instead of the hyp file's optimizer")
    p.add_argument("--single-cls", action="store_true", help="train as one class")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: batch-norm statistics over all processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repro", action="store_true",
                   help="bit-reproducible training (see README: what it turns off)")
    p.add_argument("--augment", action="store_true",
                   help="with --repro: keep online augmentation on (still deterministic)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (bf16 on a CPU with native bf16, bf16 or fp16 on a GPU)"
                        "; default on where native, off under --repro")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(args: argparse.Namespace) -> Path:
    training = start_or_restore(args)
    log = training.log
    done_epoch = training.start_epoch - 1
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.time()
    try:
        for epoch in range(training.start_epoch, training.last_epoch + 1):
            train_epoch(training, epoch)
            done_epoch = epoch
    except KeyboardInterrupt:
        log(f"\nInterrupted during epoch {done_epoch + 1}. Kept results.txt and "
            f"weights/last.pt through epoch {done_epoch}. Resume with:\n"
            f"  python train.py --resume {training.run_dir}")
        raise SystemExit(130) from None
    except NonFiniteLoss as err:
        log(f"\nStopped: {err}. weights/last.pt holds epoch {done_epoch}, the last good one.")
        raise SystemExit(1) from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        shutdown(training.dist)
    if training.lines and training.dist.is_main:
        plot_results(training.run_dir / "results.txt", training.run_dir / "results.png")
    minutes = (time.time() - started) / 60
    log(f"Epochs {training.start_epoch}..{done_epoch} done in {minutes:.1f} min. Results in "
        f"{training.run_dir}")
    return training.run_dir


def start_or_restore(args: argparse.Namespace) -> Training:
    """Resolve the options, build model, data and optimizer, then either restore a checkpoint
    (--resume) or open a new run folder. The order of the steps that draw random numbers
    (model init after seeding) is what makes a run repeat."""
    ckpt, run_dir = None, None
    if args.resume:
        args, ckpt, run_dir = resume_args(args, get_args_parser())
    check_args(args)
    dist = init_distributed(args.device)
    log = print if dist.is_main else _silent
    device = (torch.device(f"cuda:{dist.local_rank}") if dist.backend == "nccl"
              else select_device(args.device))
    data = prepare_data_once(args.data, dist)
    base_hyp, repro_notes = resolve_settings(args, data, ckpt, log)
    model, names, initial_fingerprint = build_model(args, data, ckpt, device, dist, log)
    train_set, train_loader, val_set, val_loader = build_loaders(args, data, base_hyp,
                                                                 model.num_classes, dist, log)
    accumulate = max(round(base_hyp["nbs"] / args.batch_size), 1)
    hyp = scale_hyp(base_hyp, model.num_classes, len(model.head_indices), args.img_size,
                    args.batch_size * accumulate)
    optimizer = build_optimizer(model, hyp, args.adam or hyp["optimizer"] == "adam")
    lr_factor = functools.partial(cosine_factor, epochs=args.epochs, lrf=hyp["lrf"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lr_factor)
    ema = ModelEMA(model)
    digests = input_digests(model.cfg_text, args.hyp, train_set, val_set)
    # A resumed run keeps its precision (runs from before --amp existed were fp32).
    precision, reason = (getattr(args, "precision", "fp32"), "the run's own") if ckpt else \
        choose_precision(args.amp, args.repro, device)
    args.precision = precision
    log(f"precision: {precision} ({reason})")
    training = Training(args, dist, device, log, model, model, ema, optimizer, scheduler,
                        make_grad_scaler(precision, device), lr_factor, None, train_loader,
                        val_loader, base_hyp, names, digests, run_dir, lines=[])
    if ckpt:
        restore(training, ckpt)
    elif dist.is_main:
        training.run_dir = next_run_dir(args.project, args.name)
        record = {"options": vars(args), "repro": repro_notes, "precision": precision,
                  "accumulate": accumulate,
                  "world_size": dist.world_size, "backend": dist.backend,
                  "loss_gains_used": {k: hyp[k] for k in ("box", "obj", "cls", "weight_decay")},
                  "environment": environment(device), "digests": digests,
                  "initial_fingerprint": initial_fingerprint}
        write_run_records(training.run_dir, args, base_hyp, record)
    training.run_dir = broadcast_object(training.run_dir, dist)
    log(f"Run folder {training.run_dir}; {len(train_set)} train / {len(val_set)} val images, "
        f"batch {args.batch_size} x accumulate {accumulate}, {args.epochs} epochs on {device}"
        + (f", {dist.world_size} processes ({dist.backend})" if dist.world_size > 1 else ""))
    if dist.world_size > 1:
        training.train_model = DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    training.settings = LoopSettings(
        epochs=args.epochs, hyp=hyp, accumulate=accumulate,
        warmup_iterations=round(hyp["warmup_epochs"] * len(train_loader)), seed=args.seed,
        multi_scale=args.multi_scale, loss_scale=dist.world_size,
        progress=not args.quiet and dist.is_main,
        autocast=autocast_factory(precision, device),
        plot_path=training.run_dir / "train_batch0.jpg" if dist.is_main else None,
        names=tuple(names))
    return training


def restore(training: Training, ckpt: dict) -> None:
    """Continue a run from its checkpoint: weights, EMA, optimizer, schedule, every RNG state
    and the results so far."""
    args = training.args
    for note in check_inputs_unchanged(args, ckpt, training.digests):
        training.log(f"WARNING: {note}")
    load_state_checked(training.model, ckpt["model"], args.resume)
    training.ema.load_state_dict(ckpt["ema"])
    training.optimizer.load_state_dict(ckpt["optimizer"])
    training.scheduler.load_state_dict(ckpt["scheduler"])
    if training.scaler is not None:
        training.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    training.start_epoch = ckpt["epoch"] + 1
    training.best_fitness, training.lines = ckpt["best_fitness"], ckpt["results"]
    if training.dist.is_main:
        # Drops a line written after last.pt, if the run died between the two.
        write_results(training.run_dir / "results.txt", training.lines)
        record_resume(training.run_dir, training.start_epoch, environment(training.device))
    training.log(f"Resuming {training.run_dir} from epoch {training.start_epoch}")


def train_epoch(training: Training, epoch: int) -> None:
    """One epoch of training, then (rank 0) its evaluation, fingerprint, results and
    checkpoints; the other processes wait at the barrier."""
    training.train_loader.batch_sampler.set_epoch(epoch)
    stats = train_one_epoch(training.train_model, training.ema, training.optimizer,
                            training.train_loader, training.device, epoch,
                            training.settings.hyp["lr0"] * training.lr_factor(epoch),
                            training.settings, training.scaler)
    training.scheduler.step()
    if training.dist.is_main:
        end_of_epoch(training, epoch, stats)
    barrier(training.dist)


def end_of_epoch(training: Training, epoch: int, stats: EpochStats) -> None:
    """Evaluate the EMA, fingerprint the raw weights, append to results.txt, save checkpoints."""
    args, run_dir = training.args, training.run_dir
    final = epoch == args.epochs - 1
    result = None
    if not args.notest or final:
        result = evaluate(training.ema.module, training.val_loader, training.device,
                          training.settings.hyp, names=training.names,
                          plot_path=run_dir / "val_predictions.jpg", progress=not args.quiet,
                          autocast=training.settings.autocast)
    fingerprint = state_fingerprint(training.model.state_dict())
    training.lines.append(format_line(epoch, args.epochs, _row(stats, result), fingerprint))
    score = fitness(result.map50, result.map50_95) if result else -1.0
    is_best = score > training.best_fitness
    training.best_fitness = max(training.best_fitness, score)
    if not args.nosave or final or epoch == training.last_epoch:
        state = training_checkpoint(training, epoch)
        atomic_torch_save(state, run_dir / "weights" / "last.pt")
        if is_best:
            atomic_same_file(run_dir / "weights" / "last.pt", run_dir / "weights" / "best.pt")
    write_results(run_dir / "results.txt", training.lines)
    summary = (f"mAP@0.5 {result.map50:.4f} mAP@0.5:0.95 {result.map50_95:.4f}"
               if result else "not evaluated (--notest)")
    training.log(f"epoch {epoch}/{args.epochs - 1}: loss {stats.losses['total']:.5f}, "
                 f"{summary}, fingerprint {fingerprint}")


def _silent(*_args, **_kwargs) -> None:
    """Print for processes other than rank 0: they stay quiet."""


def _raise_interrupt(_signum, _frame):
    raise KeyboardInterrupt


def _row(stats: EpochStats, result) -> dict:
    """One results.txt row; the metric columns are 0 for an epoch that was not evaluated."""
    row = {"mem_gb": stats.memory_gb, "targets": stats.targets, "img_size": stats.img_size}
    row.update(stats.losses)
    metrics = (result.precision, result.recall, result.map50, result.f1, *result.losses,
               result.map50_95) if result else (0.0,) * 8
    row.update(zip(("P", "R", "mAP@0.5", "F1", "val_box", "val_obj", "val_cls", "mAP@0.5:0.95"),
                   metrics))
    return row


if __name__ == "__main__":
    restart_with_fixed_hash_seed()
    run_script(main, get_args_parser())
