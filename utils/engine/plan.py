"""A training run's decisions, made once from its options: everything that follows from them,
the data and the device, frozen as a :class:`RunPlan` that every part of the trainer reads and
none rewrites (:func:`make_plan`): the hyperparameters after ``--repro``, the scaled loss
gains, accumulation and warm-up, the optimizer, precision and why, determinism, the portable
kernels, upsample kind, augmentation, multi-scale, drop_last, workers and pinned memory,
threads, a new run's anchors (autoanchor), and the notes printed about them. The options
themselves come from
:mod:`utils.engine.options`.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import torch

from models.cfg_parser import count_yolo_layers, parse_cfg, parse_cfg_text
from models.darknet import scaled_cfg_text
from utils.base.device import select_device
from utils.base.errors import InputError, counted
from utils.base.repro import PORTABLE_ENVIRONMENT, PORTABLE_MEMORY_FORMAT, PORTABLE_RECIPE
from utils.data.augment import AUGMENT_KEYS
from utils.data.data_config import list_images
from utils.data.datasets import AUTO_CACHE_BYTES
from utils.data.hyp import DEFAULT_HYP, load_hyp, scale_hyp, with_added_keys
from utils.engine.autoanchor import AnchorCheck, plan_anchors
from utils.engine.distributed import DistInfo
from utils.engine.options import REPRO_THREADS, RunOptions, frozen_layers
from utils.engine.precision import choose_precision

ONE_PROCESS = DistInfo()


@dataclass(frozen=True)
class RunPlan:
    """Every decision of one run. ``options`` is what was asked; the other fields are what the
    trainer does about it. Mappings are read-only views."""
    options: RunOptions
    run_dir: Path | None          # the folder of a resumed run; None for a new one
    checkpoint: Path | None       # the checkpoint a resume continues from
    device: torch.device          # under NCCL, the process's own GPU (cuda:LOCAL_RANK)
    world_size: int
    base_hyp: Mapping[str, Any]   # the hyp file's values after --repro's changes
    hyp: Mapping[str, Any]        # base_hyp with the loss gains scaled to model and size
    accumulate: int               # batches per optimizer step (to the hyp's nominal batch)
    num_classes: int
    precision: str                # fp32, bf16 or fp16
    precision_reason: str
    deterministic: bool           # strict deterministic kernels, no cuDNN benchmark, no TF32
    portable: bool                # CPU kernels pinned for the same bits on other CPUs and
                                  # at any thread count (NCHW, one-thread GEMMs, fixed sums)
    threads: int | None           # torch's CPU threads; None: torch's default (all cores)
    upsample: str                 # "nearest" or "deterministic"
    augment: bool                 # online augmentation
    multi_scale: bool
    drop_last: bool               # drop the last partial batch
    workers: int
    pin_memory: bool              # page-locked batches: only a GPU reads them faster
    optimizer: str                # "sgd" or "adam" (--adam, else the hyp file's optimizer)
    compile: str | None = None    # torch.compile's dynamic-shape mode ("static" or
                                  # "automatic"), None: the model runs eagerly
    autoanchor: AnchorCheck | None = None  # a new run's anchors against its training labels
                                           # (None: --noautoanchor, or a resume)
    notes: tuple[str, ...] = field(default=())  # what the plan pinned or chose, to print
    recipe: Mapping[str, Any] = field(default_factory=dict)  # the hyp file, why, the steps
    frozen: tuple[int, ...] = ()  # --freeze: module_list indices kept as loaded
    scaled_cfg_text: str | None = None  # a new run's cfg with the hyp's scale_x_y written in

    @property
    def epochs(self) -> int:
        return self.options.epochs

    @property
    def cfg_text(self) -> str | None:
        """The cfg a new run builds its model from when it is not the file as it is: with the
        hyp's scale_x_y in the [yolo] layers that set none, then the anchors autoanchor fitted
        and kept; else None."""
        if self.autoanchor and self.autoanchor.cfg_text:
            return self.autoanchor.cfg_text
        return self.scaled_cfg_text

    @property
    def last_epoch(self) -> int:
        """The last epoch this invocation trains (--stop-after ends a run early)."""
        return min(self.options.epochs, self.options.stop_after or self.options.epochs) - 1

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout of the model and its inputs: channels-last (oneDNN's and cuDNN's
        fastest), or under --portable NCHW, whose batch norm sums each channel on one thread
        (channels-last keeps a partial sum per thread: other bits at another thread count)."""
        return PORTABLE_MEMORY_FORMAT if self.portable else torch.channels_last

    @property
    def fixed_order_loss(self) -> bool:
        """Loss means summed in an order no thread count changes (--portable's)."""
        return self.portable

    @property
    def mosaic_epochs(self) -> int | None:
        """The epochs (from 0) whose augmented items may be mosaics: all but the hyp's last
        close_mosaic of the run's schedule; None when it closes none."""
        return mosaic_stop(self.base_hyp, self.epochs)

    def warmup_iterations(self, batches_per_epoch: int) -> int:
        """The warm-up's length in batches: the hyp's warm-up epochs of this run's loader."""
        return round(self.hyp["warmup_epochs"] * batches_per_epoch)

    def record(self) -> dict[str, Any]:
        """The options as opt.yaml and the checkpoint's ``args`` hold them (the keys and
        meaning of every earlier version: decided values filled in, precision added)."""
        record = self.options.as_dict()
        record.update(workers=self.workers, threads=self.threads, precision=self.precision)
        if self.portable:  # which --portable: 2 and above, the same bits at any thread count
            record["portable_recipe"] = PORTABLE_RECIPE
        return record


def mosaic_stop(hyp: Mapping[str, Any], epochs: int) -> int | None:
    """The first epoch (from 0) without mosaics when the hyp's close_mosaic closes the last
    epochs of an ``epochs``-epoch schedule; None when mosaic is off or nothing closes."""
    close = int(hyp["close_mosaic"])
    return max(epochs - close, 0) if close and hyp["mosaic"] else None


def choose_device(spec: str, dist: DistInfo) -> torch.device:
    """``--device`` as asked; under NCCL each process trains on its own GPU (its local rank)."""
    if dist.backend == "nccl":
        return torch.device(f"cuda:{dist.local_rank}")
    return select_device(spec)


def make_plan(options: RunOptions, ckpt: dict | None, run_dir: Path | None, data,
              dist: DistInfo = ONE_PROCESS, device: torch.device | None = None) -> RunPlan:
    """Every decision of the run from its options, its checkpoint (on resume), the .data file
    and its processes. A resumed run keeps what its checkpoint decided (hyp, precision). The
    device is chosen here (:func:`choose_device`) unless given (the benchmark and tests)."""
    device = device if device is not None else choose_device(options.device, dist)
    world_size = dist.world_size
    hyp_path = options.hyp or str(data.hyp or DEFAULT_HYP)
    options = dataclasses.replace(options, hyp=hyp_path)
    base_hyp = dict(ckpt["hyp"]) if ckpt else load_hyp(hyp_path)
    notes = []
    if ckpt:
        base_hyp, filled = with_added_keys(base_hyp)
        if filled:
            values = ", ".join(f"{k} {base_hyp[k]:g}" for k in filled)
            notes.append(f"hyp from before {', '.join(filled)}: filled with their off values "
                         f"({values}), so the run trains on as it started")
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
    stop = mosaic_stop(base_hyp, options.epochs)
    if stop is not None:  # (augmentation off has set mosaic to 0 above)
        close = int(base_hyp["close_mosaic"])
        notes.append(f"mosaic off from epoch {stop} (the hyp's close_mosaic {close}: single "
                     f"images for the run's last {counted(close, 'epoch')})")
    # --portable's bits do not depend on the thread count: it keeps torch's default (all
    # cores) unless --threads says otherwise.
    threads = options.threads if options.threads is not None else (
        REPRO_THREADS if repro and not options.portable else None)
    # Listed once: the workers' choice, the anchor check and the step count all read it.
    train_files = list_images(data.train, data.path, data.lines.get("train"))
    workers, why_workers = _workers(options, len(train_files), device)
    if repro and not ckpt:
        if options.workers is None:
            notes.append("DataLoader workers 0")
        notes.append(f"CPU threads {threads or torch.get_num_threads()}"
                     + (" (--portable: the same bits at any count)" if options.portable else ""))
    elif why_workers:
        notes.append(f"DataLoader workers: {workers} ({why_workers}; --workers sets them)")
    num_classes = 1 if options.single_cls else data.num_classes
    if ckpt and num_classes != ckpt["num_classes"]:
        raise InputError(f"classes changed: the .data file now has "
                         f"{counted(num_classes, 'class')}, the run being resumed trained "
                         f"{ckpt['num_classes']}; restore classes= or start a new run",
                         data.path)
    accumulate = max(round(base_hyp["nbs"] / options.batch_size), 1)
    # The model's layers, parsed once: a resume's from the cfg its checkpoint holds.
    sections = parse_cfg_text(ckpt["cfg_text"], options.cfg) if ckpt else parse_cfg(options.cfg)
    heads = count_yolo_layers(sections, options.cfg)
    frozen = _frozen(options, sections, notes)
    hyp = scale_hyp(base_hyp, num_classes, heads, options.img_size,
                    options.batch_size * accumulate)
    scaled = _scaled_cfg(options, ckpt, base_hyp["scale_x_y"], notes)
    autoanchor = _autoanchor(options, ckpt, data, train_files, num_classes,
                             base_hyp["anchor_t"], notes, scaled)
    if ckpt:  # runs from before --amp existed were fp32
        precision, reason = ckpt["args"].get("precision", "fp32"), "the run's own"
    else:
        precision, reason = choose_precision(options.amp, repro, device)
    compile_mode = _compile_mode(options, device, world_size, notes)
    if options.portable:
        notes.append("portable: ATen kernels at AVX2, convolutions through ATen + MKL (oneDNN "
                     "off), MKL conditional numerical reproducibility at its COMPATIBLE branch "
                     "on one thread per GEMM, NCHW layout, loss sums in a fixed order: the same "
                     "bits on other CPUs and at any thread count")
        if world_size > 1:
            notes.append(f"WARNING: --portable under {world_size} processes: the same bits at "
                         f"{world_size} processes only. Each process's batch norm sees its "
                         "share of the batch and the all-reduce adds in an order of its own, so "
                         "another process count parts from epoch 0 (the per-shard form that "
                         "would not is a prototype: docs/threads.md)")
        _check_portable_start()
    return RunPlan(options=options, run_dir=run_dir, portable=options.portable,
                   checkpoint=Path(options.resume) if ckpt else None, device=device,
                   world_size=world_size, base_hyp=MappingProxyType(base_hyp),
                   hyp=MappingProxyType(hyp), accumulate=accumulate, num_classes=num_classes,
                   precision=precision, precision_reason=reason, deterministic=repro,
                   threads=threads, upsample="deterministic" if repro else "nearest",
                   augment=augment, multi_scale=options.multi_scale and not repro,
                   drop_last=repro, workers=workers, pin_memory=device.type == "cuda",
                   optimizer="adam" if options.adam else str(hyp["optimizer"]),
                   compile=compile_mode, frozen=frozen,
                   autoanchor=autoanchor, scaled_cfg_text=scaled, notes=tuple(notes),
                   recipe=MappingProxyType(_recipe(options, data, ckpt, accumulate,
                                                   len(train_files))))


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


def _frozen(options: RunOptions, sections: list[dict], notes: list) -> tuple[int, ...]:
    """--freeze's layers, checked against the cfg's ``sections``: each must exist, and none may
    be a [yolo] layer (the heads are what a frozen backbone leaves to train)."""
    frozen = frozen_layers(options.freeze)
    if not frozen:
        return ()
    cfg = options.cfg
    kinds = [s["type"] for s in sections[1:]]
    if frozen[-1] >= len(kinds):
        raise InputError(f"--freeze {options.freeze}: the model has layers 0..{len(kinds) - 1} "
                         f"({len(kinds)} layers)", cfg)
    heads = [i for i in frozen if kinds[i] == "yolo"]
    if heads:
        first = kinds.index("yolo")
        raise InputError(f"--freeze {options.freeze}: layer {heads[0]} is a [yolo] layer (an "
                         f"output of the model, which must train); freeze layers before "
                         f"{first} (--freeze {first} at most as a count)", cfg)
    notes.append(f"frozen: layers {_spans(frozen)} (weights and batch-norm statistics as "
                 "loaded)")
    return frozen


def _spans(indices: tuple[int, ...]) -> str:
    """0,1,2,5 -> '0..2, 5'."""
    spans, start = [], indices[0]
    for previous, index in zip(indices, indices[1:] + (None,)):
        if index != previous + 1:
            spans.append(str(start) if start == previous else f"{start}..{previous}")
            start = index
    return ", ".join(spans)


def _scaled_cfg(options: RunOptions, ckpt: dict | None, scale_x_y: float, notes: list
                ) -> str | None:
    """A new run's cfg text with the hyp's ``scale_x_y`` in each [yolo] layer that sets none
    (the own-data recipe's 2: the centre decode that reaches the neighbouring cells, whose
    targets the loss then assigns too, docs/measurements/own_data.md); None when the hyp's is
    1 or every layer sets its own. A resume keeps its checkpoint's cfg."""
    if ckpt or scale_x_y == 1.0:
        return None
    text, count = scaled_cfg_text(Path(options.cfg).read_text(), scale_x_y, options.cfg)
    if not count:
        return None
    notes.append(f"cfg: scale_x_y={scale_x_y:g} written in {counted(count, '[yolo] layer')} "
                 "that set none (the hyp's scale_x_y: the centre decodes as "
                 f"sigmoid*{scale_x_y:g} - {(scale_x_y - 1) / 2:g} and each target is also "
                 "assigned to its two nearest neighbouring cells); the run's cfg says it")
    return text


def _autoanchor(options: RunOptions, ckpt: dict | None, data, train_files: list,
                num_classes: int, anchor_t: float, notes: list, cfg_text: str | None = None
                ) -> AnchorCheck | None:
    """A new run's cfg anchors against its training labels, fitted below a BPR of 0.98
    (utils/engine/autoanchor.py); a resume keeps its checkpoint's cfg, --noautoanchor the
    file's. --repro keeps it on: the fit draws from the seed alone. ``cfg_text``: the cfg as
    the run adapts it (None: the file)."""
    if ckpt or options.noautoanchor:
        return None
    check = plan_anchors(options.cfg, data, options.img_size, num_classes, options.single_cls,
                         anchor_t, options.seed, files=train_files, cfg_text=cfg_text)
    if check.fitted:
        notes.append(check.note())
    return check


def _workers(options: RunOptions, images: int, device: torch.device) -> tuple[int, str]:
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
    if _images_cached(options, images):
        return 0, "the images are cached in memory"
    return min(2, cores), "images read from disk"


# A run that steps its optimizer fewer times than this is warned before it starts. Measured on
# the raccoon set (yolov3-tiny, 320 px, batch 16, 50 epochs; docs/measurements/own_data.md):
# 150 optimizer steps (hyp.scratch.yaml's nominal batch of 64) ended at mAP@0.5 0.13, below
# 0.13 all run long; 500 steps (hyp.own.yaml) at 0.77. The built-in default run takes 1,071.
MIN_OPTIMIZER_STEPS = 300


def optimizer_steps(images: int, batch_size: int, accumulate: int, epochs: int) -> int:
    """The optimizer steps a run takes: one every ``accumulate`` batches of ``batch_size``
    (the last partial batch counted), ``epochs`` times."""
    batches = -(-images // batch_size)
    return epochs * -(-batches // accumulate)


def _recipe(options: RunOptions, data, ckpt: dict | None, accumulate: int,
            images: int) -> dict[str, Any]:
    """Which hyp file the run uses and why, how many optimizer steps it will take, and a
    warning with what to change when they are too few for the recipe to converge."""
    why = ("--hyp" if ckpt is None and options.hyp != str(data.hyp or DEFAULT_HYP)
           else "the run's own" if ckpt else "the .data file's hyp=" if data.hyp
           else "the own-data default")
    steps = optimizer_steps(images, options.batch_size, accumulate, options.epochs)
    recipe = {"hyp": options.hyp, "why": why, "optimizer_steps": steps, "warning": None}
    if steps < MIN_OPTIMIZER_STEPS:
        recipe["warning"] = (
            f"{steps} optimizer steps ({options.epochs} epochs of {images} images at batch "
            f"{options.batch_size}, accumulating {accumulate}): below the "
            f"{MIN_OPTIMIZER_STEPS} a short run needs to learn (measured: "
            "docs/measurements/own_data.md); train more epochs, or lower the hyp's nbs "
            "(nominal batch) so the optimizer steps more often")
    return recipe


def _images_cached(options: RunOptions, images: int) -> bool:
    """Whether the training images will be kept in memory: asked for, or (not asked either
    way) when letterboxed to the training size they fit under the dataset's automatic limit.
    An upper bound (each image as a full square), so a set judged cached is cached."""
    if options.cache_images is not None:
        return options.cache_images
    return images * options.img_size ** 2 * 3 <= AUTO_CACHE_BYTES
