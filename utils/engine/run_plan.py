"""A training run's decisions, made once: the options it runs with and everything decided from
them, frozen, so every part of the trainer reads one answer and none rewrites it.

Two steps, because the first has to be known before the interpreter restarts:
- :func:`resolve_options`: the parsed command line, merged with the checkpoint's options on
  ``--resume`` (refusing changes that would make it another training), into a frozen
  :class:`RunOptions`. The restart (PYTHONHASHSEED, kernel-steering variables) reads this.
- :func:`make_plan`: the options plus what follows from them, the data and the device: the
  hyperparameters after ``--repro``, the scaled loss gains, accumulation, precision and why,
  determinism, upsample kind, augmentation, drop_last, workers, threads, and the notes printed
  about them, as a frozen :class:`RunPlan`.

The parsed ``argparse.Namespace`` is never changed.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import torch

from models.cfg_parser import parse_cfg, parse_cfg_text
from utils.base.errors import InputError
from utils.base.machine import cpu_info
from utils.base.repro import PORTABLE_ENVIRONMENT
from utils.data.augment import AUGMENT_KEYS
from utils.data.datasets import AUTO_CACHE_BYTES
from utils.data.hyp import DEFAULT_HYP, load_hyp, scale_hyp
from utils.engine.checkpoint import load_checkpoint
from utils.engine.precision import choose_precision

REPRO_THREADS = 2
# Options a resume takes from its checkpoint: a different value on the command line would make
# it another training, so it is refused with a message naming the option.
PINNED_ON_RESUME = ("cfg", "data", "hyp", "epochs", "batch_size", "img_size", "seed", "repro",
                    "portable",
                    "augment", "adam", "single_cls", "rect", "multi_scale", "threads", "amp",
                    "compile", "sync_bn", "weights", "project", "name")
# Options a resume honours from the command line: none of them changes the training's bits.
HONOURED_ON_RESUME = ("device", "quiet", "stop_after", "workers", "notest", "nosave",
                      "cache_images")


def options_parser() -> argparse.ArgumentParser:
    """train.py's command line; :class:`RunOptions` has one field per option."""
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
    p.add_argument("--portable", action="store_true",
                   help="--repro whose bits hold on any x86-64 CPU with AVX2 (Intel or AMD) at "
                        "the same thread count: fp32, kernels pinned (see docs/drift.md)")
    p.add_argument("--augment", action="store_true",
                   help="with --repro: keep online augmentation on (still deterministic)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (bf16 on a CPU with native bf16, bf16 or fp16 on a GPU)"
                        "; default on where native, off under --repro")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile (inductor; on the CPU it needs a "
                        "C++ compiler): compiles on the first batch of each input shape, "
                        "counted in that epoch's time; other bits than an eager run, the same "
                        "bits run to run and across a resume (docs/speed.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


@dataclass(frozen=True)
class RunOptions:
    """train.py's options as this run uses them: one field per command-line option, with the
    hyp file chosen (the .data file's ``hyp=`` or the default) and, on resume, the
    checkpoint's values for everything but :data:`HONOURED_ON_RESUME`."""
    cfg: str
    data: str
    hyp: str | None
    epochs: int
    batch_size: int
    img_size: int
    weights: str
    device: str
    workers: int | None
    threads: int | None
    project: str
    name: str
    resume: str
    stop_after: int | None
    nosave: bool
    notest: bool
    multi_scale: bool
    rect: bool
    cache_images: bool | None
    adam: bool
    single_cls: bool
    sync_bn: bool
    seed: int
    repro: bool
    portable: bool
    augment: bool
    amp: bool | None
    quiet: bool
    compile: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunPlan:
    """Every decision of one run. ``options`` is what was asked; the other fields are what the
    trainer does about it. Mappings are read-only views."""
    options: RunOptions
    run_dir: Path | None          # the folder of a resumed run; None for a new one
    checkpoint: Path | None       # the checkpoint a resume continues from
    device: torch.device
    world_size: int
    base_hyp: Mapping[str, Any]   # the hyp file's values after --repro's changes
    hyp: Mapping[str, Any]        # base_hyp with the loss gains scaled to model and size
    accumulate: int               # batches per optimizer step (to the hyp's nominal batch)
    num_classes: int
    precision: str                # fp32, bf16 or fp16
    precision_reason: str
    deterministic: bool           # strict deterministic kernels, no cuDNN benchmark, no TF32
    portable: bool                # CPU kernels pinned for the same bits on other CPUs
    threads: int | None           # torch's CPU threads; None: torch's default (all cores)
    upsample: str                 # "nearest" or "deterministic"
    augment: bool                 # online augmentation
    multi_scale: bool
    drop_last: bool               # drop the last partial batch
    workers: int
    compile: str | None = None    # torch.compile's dynamic-shape mode ("static" or
                                  # "automatic"), None: the model runs eagerly
    notes: tuple[str, ...] = field(default=())  # what the plan pinned or chose, to print

    @property
    def epochs(self) -> int:
        return self.options.epochs

    @property
    def last_epoch(self) -> int:
        """The last epoch this invocation trains (--stop-after ends a run early)."""
        return min(self.options.epochs, self.options.stop_after or self.options.epochs) - 1

    def record(self) -> dict[str, Any]:
        """The options as opt.yaml and the checkpoint's ``args`` hold them (the keys and
        meaning of every earlier version: decided values filled in, precision added)."""
        record = self.options.as_dict()
        record.update(workers=self.workers, threads=self.threads, precision=self.precision)
        return record


def check_options(options: RunOptions) -> None:
    if options.epochs <= 0:
        raise InputError(f"--epochs {options.epochs}: must be a positive number of epochs")
    if options.batch_size <= 0:
        raise InputError(f"--batch-size {options.batch_size}: must be at least 1")
    if options.img_size <= 0 or options.img_size % 32:
        raise InputError(f"--img-size {options.img_size}: must be a positive multiple of 32 "
                         "(the largest stride)")
    if options.stop_after is not None and not 0 < options.stop_after <= options.epochs:
        raise InputError(f"--stop-after {options.stop_after}: must be in 1..{options.epochs}")
    if options.workers is not None and options.workers < 0:
        raise InputError(f"--workers {options.workers}: must be 0 or more")
    if options.threads is not None and options.threads <= 0:
        raise InputError(f"--threads {options.threads}: must be at least 1")


def resolve_options(args: argparse.Namespace, parser: argparse.ArgumentParser
                    ) -> tuple[RunOptions, dict | None, Path | None]:
    """The run's options, and on ``--resume`` its checkpoint and run folder. A new run's hyp
    file is left None here when not given (the .data file names it: :func:`make_plan`)."""
    given = RunOptions(**vars(args))
    if not given.resume:
        given = _portable_implies_repro(given)
        check_options(given)
        return given, None, None
    ckpt_path, run_dir = _resume_paths(Path(given.resume))
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("weights_only"):
        raise InputError("holds weights only (a converted file), not a training to continue: "
                         "start a new run with --weights", ckpt_path)
    _check_run_folder(ckpt_path, run_dir)
    saved = {f.name: ckpt["args"].get(f.name, parser.get_default(f.name))
             for f in dataclasses.fields(RunOptions)}
    for key in PINNED_ON_RESUME:
        value = getattr(given, key)
        if value != parser.get_default(key) and value != saved[key]:
            raise InputError(f"--resume continues the same training: --{key.replace('_', '-')} "
                             f"{value} differs from the checkpoint's {saved[key]}; start a new "
                             "run to change it", ckpt_path)
    for key in HONOURED_ON_RESUME:
        if key == "workers" and given.workers is None:
            continue  # workers never change the bits; keep the run's unless asked
        if key not in ("device", "quiet", "stop_after", "workers") and \
                getattr(given, key) == parser.get_default(key):
            continue  # not given: the run keeps its own
        saved[key] = getattr(given, key)
    saved["resume"] = str(ckpt_path)
    options = RunOptions(**saved)
    check_options(options)
    if ckpt["epoch"] + 1 >= options.epochs:
        raise InputError(f"this run already finished all {options.epochs} epochs (its "
                         "results.txt has them); start a new run to train more", ckpt_path)
    return options, ckpt, run_dir


def _portable_implies_repro(options: RunOptions) -> RunOptions:
    """--portable is a --repro run in fp32 on the CPU; a GPU or --amp asked with it is refused."""
    if not options.portable:
        return options
    if options.amp:
        raise InputError("--portable trains in fp32 (bf16 kernels differ between CPUs): drop "
                         "--amp")
    if options.device not in ("", "cpu"):
        raise InputError(f"--portable is a CPU mode: --device {options.device} is a GPU; use "
                         "--repro there")
    if "avx2" not in cpu_info()["flags"]:
        raise InputError("--portable pins the CPU kernels to AVX2, which this CPU lacks")
    return dataclasses.replace(options, repro=True, device="cpu")


def _resume_paths(path: Path) -> tuple[Path, Path]:
    """(checkpoint, run folder) of ``--resume PATH``: a run folder or its weights/last.pt."""
    if path.is_dir():
        ckpt_path = path / "weights" / "last.pt"
        if not ckpt_path.is_file():
            has_run = (path / "opt.yaml").is_file()
            raise InputError("--resume: " + (
                "this run folder has no weights/last.pt yet (its first epoch never finished): "
                "start it again" if has_run else "not a run folder (expected a folder holding "
                "weights/last.pt, or a last.pt)"), path)
        return ckpt_path, path
    if not path.is_file():
        raise InputError("--resume: no such run folder or checkpoint (expected a run folder "
                         "holding weights/last.pt, or a last.pt)", path)
    return path, path.parent.parent


def _check_run_folder(ckpt_path: Path, run_dir: Path) -> None:
    """results.txt and repro.yaml belong beside the checkpoint's own run, not wherever the file
    was copied: refused before any epoch is trained, so nothing is lost."""
    if ckpt_path.parent.name != "weights" or not (run_dir / "opt.yaml").is_file():
        raise InputError("--resume: this checkpoint is not in a run folder's weights/ (expected "
                         "RUN/weights/last.pt beside RUN/opt.yaml); put it back in its run "
                         "folder, or start a new run from it with --weights", ckpt_path)


def make_plan(options: RunOptions, ckpt: dict | None, run_dir: Path | None, data,
              device: torch.device, world_size: int = 1) -> RunPlan:
    """Every decision of the run from its options, its checkpoint (on resume), the .data file
    and the device. A resumed run keeps what its checkpoint decided (hyp, precision)."""
    hyp_path = options.hyp or str(data.hyp or DEFAULT_HYP)
    options = dataclasses.replace(options, hyp=hyp_path)
    base_hyp = dict(ckpt["hyp"]) if ckpt else load_hyp(hyp_path)
    notes = []
    repro = options.repro
    augment = not repro or options.augment
    if repro and not ckpt:
        notes += [f"seed {options.seed} for python, numpy, torch (CPU and CUDA)",
                  "deterministic kernels (strict), cuDNN deterministic, no benchmark, no TF32",
                  f"batch size pinned at {options.batch_size} (last partial batch dropped)",
                  "upsample layers -> deterministic expand+reshape"]
        if options.augment:
            notes.append("online augmentation kept on (--augment), drawn from (seed, epoch, "
                         "index)")
        else:
            off = [k for k in AUGMENT_KEYS if base_hyp[k]]
            notes.append(f"online augmentation off: {', '.join(off) or 'nothing was on'}")
        if options.multi_scale:
            notes.append("multi-scale off")
    if repro and not options.augment:
        base_hyp.update({k: 0.0 for k in AUGMENT_KEYS})
    threads = options.threads if options.threads is not None else (
        REPRO_THREADS if repro else None)
    workers, why_workers = _workers(options, data, device)
    if repro and not ckpt:
        if options.workers is None:
            notes.append("DataLoader workers 0")
        notes.append(f"CPU threads {threads}")
    elif why_workers:
        notes.append(f"DataLoader workers: {workers} ({why_workers}; --workers sets them)")
    num_classes = 1 if options.single_cls else data.num_classes
    if ckpt and num_classes != ckpt["num_classes"]:
        raise InputError(f"classes changed: the .data file now has {num_classes} classes, the "
                         f"run being resumed trained {ckpt['num_classes']}; restore classes= or "
                         "start a new run", data.path)
    accumulate = max(round(base_hyp["nbs"] / options.batch_size), 1)
    heads = _count_heads(options.cfg, ckpt["cfg_text"] if ckpt else None)
    hyp = scale_hyp(base_hyp, num_classes, heads, options.img_size,
                    options.batch_size * accumulate)
    if ckpt:  # runs from before --amp existed were fp32
        precision, reason = ckpt["args"].get("precision", "fp32"), "the run's own"
    else:
        precision, reason = choose_precision(options.amp, repro, device)
    compile_mode = _compile_mode(options, device, world_size, notes)
    if options.portable:
        notes.append("portable: ATen kernels at AVX2, convolutions through ATen + MKL (oneDNN "
                     "off), MKL conditional numerical reproducibility at its COMPATIBLE branch")
        _check_portable_start()
    return RunPlan(options=options, run_dir=run_dir, portable=options.portable,
                   checkpoint=Path(options.resume) if ckpt else None, device=device,
                   world_size=world_size, base_hyp=MappingProxyType(base_hyp),
                   hyp=MappingProxyType(hyp), accumulate=accumulate, num_classes=num_classes,
                   precision=precision, precision_reason=reason, deterministic=repro,
                   threads=threads, upsample="deterministic" if repro else "nearest",
                   augment=augment, multi_scale=options.multi_scale and not repro,
                   drop_last=repro, workers=workers, compile=compile_mode,
                   notes=tuple(notes))


def _compile_mode(options: RunOptions, device: torch.device, world_size: int, notes: list
                  ) -> str | None:
    """--compile's dynamic-shape mode, or None without it. A run at one size compiles each batch
    shape once ("static": the full batches and the last partial one, two compilations); a run
    whose batches change size (--multi-scale, --rect) compiles shape-generic code after the
    second shape ("automatic"), since one compilation per size would pass torch's limit."""
    if not options.compile:
        return None
    if world_size > 1:
        raise InputError("--compile under DDP (torchrun) is not supported by this trainer yet: "
                         "drop --compile, or train in one process")
    if options.portable:
        raise InputError("--portable pins the CPU kernels to ATen's and MKL's; --compile would "
                         "generate its own: drop one")
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise InputError("--compile on the CPU needs a C++ compiler on PATH (g++, c++ or "
                         "clang++) for the kernels torch.compile generates; install one or "
                         "drop --compile")
    mode = "automatic" if (options.multi_scale and not options.repro) or options.rect \
        else "static"
    notes.append(f"torch.compile ({mode} shapes): compiles on the first batch of each shape, "
                 "in that epoch's time")
    return mode


def _check_portable_start() -> None:
    """A --portable run needs its variables set when the interpreter started (train.py's
    restart sets them); in a process started without them the kernels are already chosen."""
    missing = {k: v for k, v in PORTABLE_ENVIRONMENT.items() if os.environ.get(k) != v}
    capability = torch.backends.cpu.get_cpu_capability()
    if missing or capability != "AVX2":
        raise InputError("--portable: this process started without its kernel settings "
                         f"(missing {missing or 'none'}, ATen capability {capability}); run "
                         "it as `python train.py --portable ...`, which restarts itself with "
                         "them")


def _count_heads(cfg: str, cfg_text: str | None) -> int:
    sections = parse_cfg_text(cfg_text, cfg) if cfg_text is not None else parse_cfg(cfg)
    return sum(1 for s in sections if s["type"] == "yolo")


def _workers(options: RunOptions, data, device: torch.device) -> tuple[int, str]:
    """DataLoader workers, and why when they were not given.

    On a GPU the loader must keep up with a fast step: a worker per core, up to 8. On the CPU
    the workers take cores from the step itself; with the images cached in memory an augmented
    image (mosaic included) costs about 2.4 ms, less than the contention costs (two epochs of
    yolov3-tiny at 224 px, batch 16, on 2 cores: 41 s with 0 workers, 45 s with 1, 50 s with
    2), so the main process loads them. Images read from disk (8.5 ms each) get up to 2.
    """
    if options.workers is not None:
        return options.workers, ""
    if options.repro:
        return 0, ""
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, cores), "a worker per core on a GPU, up to 8"
    if _images_cached(options, data):
        return 0, "the images are cached in memory"
    return min(2, cores), "images read from disk"


def _images_cached(options: RunOptions, data) -> bool:
    """Whether the training images will be kept in memory: asked for, or (not asked either
    way) when letterboxed to the training size they fit under the dataset's automatic limit.
    An upper bound (each image as a full square), so a set judged cached is cached."""
    if options.cache_images is not None:
        return options.cache_images
    from utils.data.data_config import list_images
    files = list_images(data.train, data.path, data.lines.get("train"))
    return len(files) * options.img_size ** 2 * 3 <= AUTO_CACHE_BYTES
