"""train.py's options as a run uses them: the command line (:func:`options_parser`), merged
with the checkpoint's options on ``--resume`` (refusing changes that would make it another
training), into a frozen :class:`RunOptions` (:func:`resolve_options`).

This is the first of a run's two decision steps, and the one the restart needs: a run that must
set variables at interpreter start (PYTHONHASHSEED, the --portable kernel variables) reads these
options before anything else is decided. The second step is :mod:`utils.engine.plan`. The parsed
``argparse.Namespace`` is never changed.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.base.device import add_device_argument
from utils.base.errors import InputError, counted
from utils.base.machine import cpu_info
from utils.base.repro import PORTABLE_RECIPE
from utils.data.hyp import DEFAULT_HYP
from utils.engine.checkpoint import load_checkpoint

REPRO_THREADS = 2
# Options a resume takes from its checkpoint: a different value on the command line would make
# it another training, so it is refused with a message naming the option.
PINNED_ON_RESUME = ("cfg", "data", "hyp", "epochs", "batch_size", "img_size", "seed", "repro",
                    "portable", "noautoanchor",
                    "augment", "adam", "single_cls", "rect", "multi_scale", "threads", "amp",
                    "compile", "sync_bn", "weights", "project", "name", "freeze",
                    "image_weights")
# Options a resume honours from the command line: none of them changes the training's bits.
# --patience and --save-period change where a run stops and which checkpoints it keeps, not the
# bits of any epoch it trains, so they are honoured too.
HONOURED_ON_RESUME = ("device", "quiet", "stop_after", "workers", "notest", "nosave",
                      "cache_images", "tb", "mlflow", "patience", "save_period")
# A new run's values of the options that have one. They parse to None when not given, so a
# resume tells "given" from "not given" whatever the value: `--resume RUN --epochs 17` asks for
# 17 epochs even though 17 is the default, and is refused when the run has another count.
# The defaults train the built-in set to mAP@0.5 > 0.8 in about 3 minutes on 2 CPU cores.
DEFAULTS = {"cfg": "cfg/yolov3-tiny.cfg", "data": "data/shapes.data", "epochs": 17,
            "batch_size": 8, "img_size": 224, "weights": "", "project": "runs/train",
            "name": "exp", "seed": 0}


def options_parser() -> argparse.ArgumentParser:
    """train.py's command line; :class:`RunOptions` has one field per option."""
    p = argparse.ArgumentParser(description="Train YOLOv3 from a darknet cfg.")
    d = DEFAULTS
    p.add_argument("--cfg", help=f"darknet model cfg (default: {d['cfg']})")
    p.add_argument("--data", help=f".data file (default: {d['data']}, the built-in set)")
    p.add_argument("--hyp", default=None,
                   help="hyperparameter yaml (default: the .data file's hyp=, else "
                        f"{DEFAULT_HYP.name})")
    p.add_argument("--epochs", type=int, help=f"epochs to train (default: {d['epochs']})")
    p.add_argument("--batch-size", type=int,
                   help=f"images per batch, over all processes (default: {d['batch_size']})")
    p.add_argument("--img-size", type=int,
                   help=f"train and test size in pixels (default: {d['img_size']})")
    p.add_argument("--weights", help="initial weights: a .pt, a darknet file or a backbone cut "
                                     "(*.conv.N) (default: none, random initialisation)")
    add_device_argument(p)
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers (default: 0 on the CPU when the images fit in "
                        "memory, else 2; up to 8 on a GPU; 0 under --repro)")
    p.add_argument("--threads", type=int, default=None,
                   help=f"CPU threads for torch (default all, or {REPRO_THREADS} under --repro)")
    p.add_argument("--project", help=f"folder of run folders (default: {d['project']})")
    p.add_argument("--name", help=f"run folder name, exp2, exp3, ... if taken (default: "
                                  f"{d['name']})")
    p.add_argument("--resume", default="",
                   help="a run folder, or a checkpoint in its weights/ (last.pt, or an "
                        "epochK.pt of --save-period where the run has not gone past it)")
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
    p.add_argument("--seed", type=int, help=f"the seed of every draw (default: {d['seed']})")
    p.add_argument("--repro", action="store_true",
                   help="bit-reproducible training (see README: what it turns off)")
    p.add_argument("--portable", action="store_true",
                   help="--repro whose bits hold on any x86-64 CPU with AVX2 (Intel or AMD) and "
                        "at any thread count: fp32, kernels pinned (see docs/threads.md)")
    p.add_argument("--augment", action="store_true",
                   help="with --repro: keep online augmentation on (still deterministic)")
    p.add_argument("--noautoanchor", action="store_true",
                   help="keep the cfg's anchors; by default a new run whose anchors reach a best "
                        "possible recall below 0.98 on its training labels fits new ones "
                        "(drawn from --seed: the same every run; docs/training.md)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (bf16 on a CPU with native bf16, bf16 or fp16 on a GPU)"
                        "; default on where native, off under --repro")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile (inductor; on the CPU it needs a "
                        "C++ compiler): compiles on the first batch of each input shape, "
                        "counted in that epoch's time; other bits than an eager run, the same "
                        "bits run to run and across a resume (docs/speed.md)")
    p.add_argument("--freeze", default=None,
                   help="keep layers fixed: N freezes module_list layers 0..N-1 (as a backbone cut "
                        "*.conv.N counts them), a comma list (0,1,2) those layers; their weights "
                        "get no gradient and their batch-norm statistics stay as loaded "
                        "(default: none)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop when the fitness (0.1 mAP@0.5 + 0.9 mAP@0.5:0.95) has not improved "
                        "for this many evaluated epochs (default: never)")
    p.add_argument("--save-period", type=int, default=None,
                   help="also keep weights/epochK.pt every N epochs: whole checkpoints, for "
                        "--resume and test.py (default: none)")
    p.add_argument("--image-weights", action="store_true",
                   help="class-balanced sampling: draw images with replacement, weighted by the "
                        "inverse frequency of their classes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--tb", action=argparse.BooleanOptionalAction, default=True,
                   help="TensorBoard event files in the run folder (tensorboard --logdir "
                        "runs/train); --no-tb: none (default: on)")
    p.add_argument("--mlflow", action="store_true",
                   help="log the run to MLflow: MLFLOW_TRACKING_URI, else a local mlruns/ "
                        "folder (default: off)")
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
    tb: bool = True
    mlflow: bool = False
    noautoanchor: bool = False
    compile: bool = False
    freeze: str | None = None
    patience: int | None = None
    save_period: int | None = None
    image_weights: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    for name, value in (("patience", options.patience), ("save-period", options.save_period)):
        if value is not None and value <= 0:
            raise InputError(f"--{name} {value}: must be a positive number of epochs (leave it "
                             "out for none)")
    if options.image_weights and options.rect:
        raise InputError("--image-weights draws each epoch's images by their classes; --rect "
                         "keeps them in aspect-ratio order to share a batch shape: drop one")
    frozen_layers(options.freeze)


def frozen_layers(spec: str | None) -> tuple[int, ...]:
    """``--freeze``'s module_list indices: ``N`` is layers 0..N-1 (0: none), a comma list
    names them. Only the form is checked here; the model's layers are checked by the plan."""
    if not spec:
        return ()
    try:
        numbers = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 0:
        raise InputError(f"--freeze {spec}: expected a layer count N (layers 0..N-1) or a comma "
                         "list of layer indices such as 0,1,2")
    if "," not in spec:
        return tuple(range(numbers[0]))
    if len(set(numbers)) != len(numbers):
        raise InputError(f"--freeze {spec}: names a layer twice")
    return tuple(sorted(numbers))


def resolve_options(args: argparse.Namespace, parser: argparse.ArgumentParser
                    ) -> tuple[RunOptions, dict | None, Path | None]:
    """The run's options, and on ``--resume`` its checkpoint and run folder. A new run's hyp
    file is left None here when not given (the .data file names it: :func:`make_plan`)."""
    given = RunOptions(**vars(args))
    if not given.resume:
        given = dataclasses.replace(given, **{k: v for k, v in DEFAULTS.items()
                                              if getattr(given, k) is None})
        given = _portable_implies_repro(given)
        check_options(given)
        return given, None, None
    ckpt_path, run_dir = _resume_paths(Path(given.resume))
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("weights_only"):
        raise InputError("holds weights only (a converted file), not a training to continue: "
                         "start a new run with --weights", ckpt_path)
    _check_run_folder(ckpt_path, run_dir)
    _check_not_behind(ckpt_path, ckpt)
    saved = {f.name: ckpt["args"].get(f.name, DEFAULTS.get(f.name, parser.get_default(f.name)))
             for f in dataclasses.fields(RunOptions)}
    # A thread-count-free --portable run (recipe 2, docs/threads.md) continues at any count.
    recipe = ckpt["args"].get("portable_recipe") or 1
    if saved["portable"] and recipe != PORTABLE_RECIPE:
        raise InputError(f"a --portable run of recipe {recipe} (its layout and sums: "
                         f"docs/threads.md); this trainer computes recipe {PORTABLE_RECIPE}, "
                         "whose bits differ from the first step: finish it with the commit "
                         "that began it (repro.yaml's git_commit), or start a new run",
                         ckpt_path)
    thread_free = saved["portable"] and recipe >= 2
    for key in PINNED_ON_RESUME:
        value = getattr(given, key)
        if key == "threads" and thread_free:
            saved[key] = value if value is not None else saved[key]
            continue
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
    stale = ckpt.get("stale_epochs", 0)  # none in checkpoints from before --patience
    if options.patience and stale >= options.patience:
        raise InputError(f"this run stopped early after epoch {ckpt['epoch']}: its fitness did "
                         f"not improve in {counted(stale, 'evaluated epoch')} (--patience "
                         f"{options.patience}); resume with a larger --patience to go on, or "
                         "start a new run", ckpt_path)
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


def _check_not_behind(ckpt_path: Path, ckpt: dict) -> None:
    """A checkpoint other than last.pt (``--save-period``'s epochK.pt, best.pt) continues the
    run only where the run has not gone past it: resuming an earlier epoch would rewrite the
    later epochs' results.txt lines and checkpoints. A last.pt that is missing or unreadable
    does not count (that is when an earlier checkpoint is wanted)."""
    last = ckpt_path.parent / "last.pt"
    if ckpt_path.name == "last.pt" or not last.is_file():
        return
    try:
        last_epoch = load_checkpoint(last)["epoch"]
    except InputError:
        return
    if last_epoch > ckpt["epoch"]:
        raise InputError(f"--resume: this checkpoint holds epoch {ckpt['epoch']}, but the run "
                         f"has gone on to epoch {last_epoch} (weights/last.pt); resuming here "
                         f"would overwrite epochs {ckpt['epoch'] + 1}..{last_epoch} of its "
                         "results.txt and checkpoints: resume the run folder to continue it, "
                         "or start a new run from this file with --weights", ckpt_path)


def _check_run_folder(ckpt_path: Path, run_dir: Path) -> None:
    """results.txt and repro.yaml belong beside the checkpoint's own run, not wherever the file
    was copied: refused before any epoch is trained, so nothing is lost."""
    if ckpt_path.parent.name != "weights" or not (run_dir / "opt.yaml").is_file():
        raise InputError("--resume: this checkpoint is not in a run folder's weights/ (expected "
                         "RUN/weights/last.pt beside RUN/opt.yaml); put it back in its run "
                         "folder, or start a new run from it with --weights", ckpt_path)
