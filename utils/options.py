"""Checking and resolving train.py's options: value checks, what --repro pins, what a resume
keeps from its checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from utils.augment import AUGMENT_KEYS
from utils.checkpoint import load_checkpoint
from utils.errors import InputError

REPRO_THREADS = 2
# Options a resume takes from the checkpoint; giving another value on the command line is refused.
PINNED_ON_RESUME = ("cfg", "data", "hyp", "epochs", "batch_size", "img_size", "seed", "repro",
                    "augment", "adam", "single_cls", "rect", "multi_scale", "threads", "amp")


def check_args(args: argparse.Namespace) -> None:
    if args.epochs <= 0:
        raise InputError(f"--epochs {args.epochs}: must be a positive number of epochs")
    if args.batch_size <= 0:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.img_size <= 0 or args.img_size % 32:
        raise InputError(f"--img-size {args.img_size}: must be a positive multiple of 32 "
                         "(the largest stride)")
    if args.stop_after is not None and not 0 < args.stop_after <= args.epochs:
        raise InputError(f"--stop-after {args.stop_after}: must be in 1..{args.epochs}")
    if args.workers is not None and args.workers < 0:
        raise InputError(f"--workers {args.workers}: must be 0 or more")
    if args.threads is not None and args.threads <= 0:
        raise InputError(f"--threads {args.threads}: must be at least 1")


def apply_repro(args: argparse.Namespace, hyp: dict) -> list[str]:
    """Pin what makes runs differ. Returns what was turned off or fixed, to print."""
    if not args.repro:
        return []
    notes = [f"seed {args.seed} for python, numpy, torch (CPU and CUDA)",
             "deterministic kernels (strict), cuDNN deterministic, no benchmark, no TF32",
             f"batch size pinned at {args.batch_size} (last partial batch dropped)",
             "upsample layers -> deterministic expand+reshape"]
    if args.augment:
        notes.append("online augmentation kept on (--augment), drawn from (seed, epoch, index)")
    else:
        off = [k for k in AUGMENT_KEYS if hyp[k]]
        for k in AUGMENT_KEYS:
            hyp[k] = 0.0
        notes.append(f"online augmentation off: {', '.join(off) or 'nothing was on'}")
    if args.multi_scale:
        args.multi_scale = False
        notes.append("multi-scale off")
    if args.workers is None:
        args.workers = 0
        notes.append("DataLoader workers 0")
    if args.threads is None:
        args.threads = REPRO_THREADS
    notes.append(f"CPU threads {args.threads}")
    return notes


def resume_args(args: argparse.Namespace, parser: argparse.ArgumentParser
                ) -> tuple[argparse.Namespace, dict, Path]:
    """Options of the run being resumed, with the checkpoint; refuses changed pinned options."""
    path = Path(args.resume)
    ckpt_path = path / "weights" / "last.pt" if path.is_dir() else path
    if not ckpt_path.is_file():
        raise InputError("--resume: no such run folder or checkpoint (expected a run folder "
                         "holding weights/last.pt, or a last.pt)", path)
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("weights_only"):
        raise InputError("holds weights only (a converted file), not a training to continue: "
                         "start a new run with --weights", ckpt_path)
    saved = argparse.Namespace(**ckpt["args"])
    for key in PINNED_ON_RESUME:
        given = getattr(args, key)
        if given != parser.get_default(key) and given != getattr(saved, key):
            raise InputError(f"--resume continues the same training: --{key.replace('_', '-')} "
                             f"{given} differs from the checkpoint's {getattr(saved, key)}; "
                             "start a new run to change it", ckpt_path)
    for key in ("device", "quiet", "stop_after"):
        setattr(saved, key, getattr(args, key))
    if args.workers is not None:  # workers never change the bits; keep the run's unless asked
        saved.workers = args.workers
    saved.resume = str(ckpt_path)
    return saved, ckpt, ckpt_path.parent.parent
