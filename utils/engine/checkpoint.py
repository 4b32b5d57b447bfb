"""Checkpoints: everything an exact resume needs, and loading weights for inference.

A training checkpoint holds the raw weights and the EMA weights apart, the EMA update count, the
optimizer and scheduler, the epoch, every RNG state, the resolved options and hyperparameters,
the cfg text and class names, and the results.txt lines so far. It is written and read back
side by side here (:func:`training_checkpoint`, :func:`restore_training`). An epoch that was
evaluated also leaves ``f1_conf``: the score threshold of its evaluation's highest mean F1 (where
results.txt's P, R and F1 are read), detect.py's default threshold for these weights; None where
the epoch was not evaluated or F1 was 0 at every threshold (absent from older checkpoints).
"""
from __future__ import annotations

from pathlib import Path

import torch

from models.darknet import Darknet
from models.darknet_weights import is_darknet_weights, load_darknet_weights
from utils.base.errors import InputError, WeightsError
from utils.base.repro import get_rng_state, set_rng_state

CHECKPOINT_KIND = "yolov3-repro-checkpoint"


# Packages whose checkpoints pickle their own model classes, so torch.load needs the package.
FOREIGN = {"ultralytics": "an ultralytics", "yolov5": "a yolov5", "mmdet": "an mmdetection",
           "detectron2": "a detectron2"}
READABLE = ("this trainer reads its own checkpoints (train.py's weights/*.pt), darknet .weights "
            "files with their .cfg, and .onnx files from python -m tools.export")


def load_checkpoint(path: str | Path) -> dict:
    """Load and check a training checkpoint (.pt). Raises WeightsError for any other file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError("no such checkpoint file", path)
    if is_darknet_weights(path):
        raise WeightsError("a darknet weights file, not a checkpoint of this trainer: start a new "
                           "run from it with --weights, or convert it with "
                           "python -m tools.convert_weights", path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a file that is not its own
        first_line = (str(err).splitlines() or [""])[0]
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] in FOREIGN:
            raise WeightsError(f"{FOREIGN[err.name.split('.')[0]]} checkpoint (it pickles that "
                               f"package's own classes): {READABLE}", path) from None
        raise WeightsError(f"not a PyTorch checkpoint, or a truncated one "
                           f"({type(err).__name__}: {first_line})", path) from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise WeightsError("a PyTorch file, but not a checkpoint written by this trainer "
                           f"(expected kind={CHECKPOINT_KIND!r})", path)
    return ckpt


def load_state_checked(model: torch.nn.Module, state: dict, source: str | Path) -> None:
    """Load ``state`` into ``model`` strictly; list every missing, unexpected or misshapen key."""
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                 for k, v in state.items() if k in own and v.shape != own[k].shape]
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more"
                                             if len(problems) > 20 else "")
        raise WeightsError(f"weights do not fit the model ({len(problems)} keys): {shown}",
                           source)
    model.load_state_dict(state)


def model_from_checkpoint(ckpt: dict, source: str | Path, use_ema: bool = True) -> Darknet:
    model = Darknet(ckpt["cfg_path"], num_classes=ckpt["num_classes"],
                    upsample=ckpt.get("upsample", "nearest"), cfg_text=ckpt["cfg_text"])
    state = ckpt["ema"]["weights"] if use_ema and ckpt.get("ema") else ckpt["model"]
    load_state_checked(model, state, source)
    return model


def load_inference_model(weights: str | Path, cfg: str | Path | None = None,
                         num_classes: int | None = None) -> tuple[Darknet, dict]:
    """A model ready for evaluation from a checkpoint (its EMA weights) or a darknet weights file
    (with ``cfg``; recognised by content, whatever its name). Returns the model and the
    checkpoint's metadata (empty for darknet files)."""
    weights = Path(weights)
    if is_darknet_weights(weights):
        if cfg is None:
            raise InputError("a darknet weights file needs --cfg", weights)
        model = Darknet(cfg, num_classes=num_classes)
        load_darknet_weights(model, weights)
        return model, {}
    ckpt = load_checkpoint(weights)
    if cfg is not None:
        raise InputError(f"--cfg {cfg}: --cfg applies to darknet weights files; a checkpoint "
                         "carries the cfg it was trained with: drop --cfg", weights)
    model = model_from_checkpoint(ckpt, weights)
    meta = {k: ckpt.get(k) for k in ("names", "args", "epoch", "data", "img_size", "f1_conf")}
    return model, meta


def load_initial_weights(model: Darknet, weights: str | Path) -> list[str]:
    """Start training from ``weights``: a checkpoint's raw weights, or a darknet file for the
    same cfg, whole or a backbone cut (``darknet53.conv.74``: its first 74 layers).

    Tensors whose shape differs (e.g. yolo heads for another class count) are left as
    initialized. Returns the lines to print: what was loaded, then one line per tensor not
    loaded, so nothing is dropped silently."""
    weights = Path(weights)
    from_darknet = is_darknet_weights(weights)
    if from_darknet:
        source = Darknet(model.cfg_path, cfg_text=model.cfg_text)  # the cfg's own class count
        report = load_darknet_weights(source, weights)
        state = {k: v for k, v in source.state_dict().items()
                 if int(k.split(".")[1]) < report.layers}
        lines = [report.summary(weights)]
    else:
        state = load_checkpoint(weights)["model"]
        lines = [f"loaded {Path(weights).name}"]
    own = model.state_dict()
    skipped = [f"{k}: not in the model" for k in state if k not in own]
    skipped += [f"{k}: weights {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                for k, v in own.items() if k in state and state[k].shape != v.shape]
    if not from_darknet:  # a backbone cut leaves the later layers out on purpose
        skipped += [f"{k}: not in the weights" for k in own if k not in state]
    # The anchors are the cfg's (as written, or as autoanchor fitted them to this run's data),
    # never the weights': a buffer of the same shape would replace them without a word, and
    # the run's cfg_text (its converted cfg, its resume) would then name other anchors.
    anchors = [k for k in state if k.endswith(".anchors") and k in own
               and state[k].shape == own[k].shape and not torch.equal(state[k], own[k])]
    fitting = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape
               and not k.endswith(".anchors")}
    own.update(fitting)
    model.load_state_dict(own)
    kept = [f"kept the cfg's anchors, not the weights' ({len(anchors)} yolo layers differ)"]
    return lines + [f"not loaded {line}" for line in skipped] + (kept if anchors else [])


def training_checkpoint(training, epoch: int, evaluation=None) -> dict:
    """Everything an exact resume needs, after ``epoch`` of ``training`` (an engine.Training).
    :func:`restore_training` below reads each part back. ``evaluation``: the epoch's
    EvalResult (None: not evaluated), whose best-F1 threshold the checkpoint keeps for
    inference; a resume needs none of it, and no weight or fingerprint depends on it."""
    plan, model = training.plan, training.model
    f1_conf = evaluation.f1_conf if evaluation is not None and evaluation.f1 > 0 else None
    return {"kind": CHECKPOINT_KIND, "epoch": epoch, "model": model.state_dict(),
            "ema": training.ema.state_dict(), "optimizer": training.optimizer.state_dict(),
            "scheduler": training.scheduler.state_dict(),
            "scaler": training.scaler.state_dict() if training.scaler else None,
            "rng": get_rng_state(), "args": plan.record(), "hyp": dict(plan.base_hyp),
            "cfg_path": model.cfg_path, "cfg_text": model.cfg_text,
            "num_classes": model.num_classes, "names": training.names,
            "data": plan.options.data, "img_size": plan.options.img_size,
            "upsample": model.upsample_mode, "best_fitness": training.best_fitness,
            "results": training.lines, "digests": training.digests,
            "logs": dict(training.log_state), "stale_epochs": training.stale_epochs,
            "f1_conf": f1_conf}


def restore_training(training, ckpt: dict) -> None:
    """Continue ``training`` from its checkpoint: weights, EMA, optimizer, schedule, every RNG
    state and the results so far. (The sample order needs no state of its own: it is drawn
    from (seed, epoch).)"""
    load_state_checked(training.model, ckpt["model"], training.plan.checkpoint)
    training.ema.load_state_dict(ckpt["ema"])
    training.optimizer.load_state_dict(ckpt["optimizer"])
    training.scheduler.load_state_dict(ckpt["scheduler"])
    if training.scaler is not None:
        training.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    training.start_epoch = ckpt["epoch"] + 1
    training.best_fitness, training.lines = ckpt["best_fitness"], list(ckpt["results"])
    training.log_state = dict(ckpt.get("logs") or {})  # none in checkpoints from before logs
    # --patience's count goes on where it was, so a resumed run stops where a straight one
    # does (0 in checkpoints from before it: they had not counted).
    training.stale_epochs = ckpt.get("stale_epochs", 0)


def weights_checkpoint(model: Darknet, names: list[str] | None = None, source: str = "") -> dict:
    """A checkpoint holding weights only (no training state): what the weights converter writes.
    It loads for test.py, detect.py and ``train.py --weights``, not for ``--resume``."""
    return {"kind": CHECKPOINT_KIND, "weights_only": True, "source": source,
            "model": model.state_dict(), "ema": None, "cfg_path": model.cfg_path,
            "cfg_text": model.cfg_text, "num_classes": model.num_classes, "names": names,
            "upsample": model.upsample_mode}


def check_img_size(img_size: int, model: Darknet) -> None:
    """An inference size the model can take: a positive multiple of its largest stride."""
    stride = max(model.strides())
    if img_size <= 0 or img_size % stride:
        raise InputError(f"--img-size {img_size}: must be a positive multiple of {stride} "
                         "(the model's largest stride)")
