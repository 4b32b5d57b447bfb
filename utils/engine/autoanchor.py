"""A new run's anchors against its training labels (autoanchor, on by default; ``--noautoanchor``
turns it off; a resumed run keeps the anchors of its checkpoint's cfg).

The check and the fit are yolov5's (``utils/autoanchor.py``; the math in
:mod:`utils.core.anchors`): each label box's size at the run's image size as the image is
letterboxed, the shape metric of a box and an anchor, the best possible recall (BPR: the
fraction of boxes some anchor matches, by the loss's ``anchor_t`` rule) and the anchors above
threshold (AAT: matching anchors per box). Below a BPR of 0.98 the anchors are fitted (k-means
on the box sizes, then 1000 generations of mutation, every draw from
:func:`utils.base.repro.anchor_generator` of the run's seed), and kept only when they reach a
higher BPR. Kept anchors are written into the cfg text's ``anchors=`` lines in ascending area
order, the masks left as they are (the shipped cfgs' highest-resolution layer names the first
entries, so it gets the smallest); the model, its checkpoint, ``--resume``, the converted
darknet cfg and the ONNX file then all carry them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.cfg_parser import count_yolo_layers, parse_cfg
from models.darknet import anchored_cfg_text, cfg_anchors
from utils.base.errors import InputError
from utils.base.repro import anchor_generator
from utils.core.anchors import (
    MIN_FIT_SIZE,
    AnchorStats,
    anchor_stats,
    fit_anchors,
    fit_points,
    letterboxed_wh,
)
from utils.data.data_config import label_path_for, list_images
from utils.data.label_sizes import LabelSizes, label_sizes

# Below this BPR the cfg's anchors are fitted anew (yolov5 keeps them above 0.98; here 0.98
# itself also keeps them).
FIT_BELOW = 0.98
GENERATIONS = 1000
NO_AUTOANCHOR = "train with --noautoanchor to keep the cfg's anchors"

Pairs = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class AnchorCheck:
    """What autoanchor found and did. ``anchors_*``: the cfg's used anchors (the entries its
    masks name, in the cfg's order), in pixels; ``*_after`` only when a fit ran."""
    img_size: int
    anchor_t: float
    seed: int
    generations: int
    boxes: int                        # label boxes measured
    before: AnchorStats
    anchors_before: Pairs
    after: AnchorStats | None = None
    anchors_after: Pairs | None = None
    kept: bool = False                # the fitted anchors replace the cfg's
    cfg_text: str | None = None       # the cfg with the fitted anchors, when kept

    @property
    def fitted(self) -> bool:
        return self.after is not None

    def record(self) -> dict[str, Any]:
        """repro.yaml's ``autoanchor``: plain numbers and lists."""
        after = self.after
        return {"img_size": self.img_size, "anchor_t": self.anchor_t, "seed": self.seed,
                "boxes": self.boxes, "bpr_before": self.before.bpr,
                "aat_before": self.before.aat, "anchors_before": _lists(self.anchors_before),
                "bpr_after": after.bpr if after else None,
                "aat_after": after.aat if after else None,
                "anchors_after": _lists(self.anchors_after) if self.anchors_after else None,
                "generations": self.generations if after else 0, "kept": self.kept}

    def lines(self) -> list[str]:
        """What to print: the cfg's anchors on the data, then the fit and the choice."""
        out = [f"{self.boxes} label boxes at {self.img_size} px, anchor_t {self.anchor_t:g}: "
               f"the cfg's anchors {_text(self.anchors_before)}: {_stats(self.before)}"]
        if not self.fitted:
            out.append(f"BPR {self.before.bpr:.4f} >= {FIT_BELOW}: the cfg's anchors fit the "
                       "data, kept")
            return out
        forced = self.before.bpr >= FIT_BELOW  # tools.anchors --fit
        how = (f"{len(self.anchors_after)} anchors fitted (k-means, then {self.generations} "
               f"generations of mutation, seed {self.seed}): {_text(self.anchors_after)}: "
               f"{_stats(self.after)}")
        out.append(f"--fit: {how}" if forced else f"BPR below {FIT_BELOW}: {how}")
        if forced:
            out.append(f"a training keeps the cfg's anchors (BPR >= {FIT_BELOW}); the fit is "
                       + ("better" if self.kept else "not better"))
        elif self.kept:
            out.append("kept: the cfg's anchors= lines rewritten with them (model, checkpoint, "
                       "exports)")
        else:
            out.append("not better than the cfg's: the cfg's anchors kept")
        return out

    def note(self) -> str:
        """The plan's note about a fit."""
        if not self.kept:
            return (f"autoanchor: a fit reached BPR {self.after.bpr:.4f}, not above the cfg's "
                    f"{self.before.bpr:.4f}: the cfg's anchors kept")
        return (f"autoanchor: anchors fitted to the training labels (BPR {self.before.bpr:.4f} "
                f"-> {self.after.bpr:.4f}), drawn from seed {self.seed} (the same every run); "
                "--noautoanchor keeps the cfg's")


def plan_anchors(cfg: str, data, img_size: int, num_classes: int, single_cls: bool,
                 anchor_t: float, seed: int, generations: int = GENERATIONS,
                 fit: bool = False, files: list | None = None,
                 cfg_text: str | None = None) -> AnchorCheck:
    """The check of a new run: the cfg file ``cfg`` against the training labels of ``data``
    (a DataConfig) at ``img_size``. Raises InputError when the anchors must be fitted and
    cannot be. ``fit``: fit even when the cfg's anchors pass (tools.anchors --fit).
    ``files``: the training images when the caller has listed them already; ``cfg_text``:
    the cfg as the run adapts it (None: the file's text)."""
    count_yolo_layers(parse_cfg(cfg), cfg)  # a missing or broken cfg, said as the model says it
    if files is None:
        files = list_images(data.train, data.path, data.lines.get("train"))
    sizes = label_sizes(files, num_classes, single_cls)
    text = cfg_text if cfg_text is not None else Path(cfg).read_text()
    return check_anchors(text, cfg, sizes, img_size, anchor_t, seed,
                         data.path, generations, fit)


def check_anchors(cfg_text: str, cfg_path, sizes: LabelSizes, img_size: int, anchor_t: float,
                  seed: int, where=None, generations: int = GENERATIONS, fit: bool = False
                  ) -> AnchorCheck:
    """BPR and AAT of the cfg's anchors on ``sizes`` at ``img_size``; below :data:`FIT_BELOW`
    (or with ``fit``) the fit, kept when its BPR is higher. ``where``: the file named in a
    refusal."""
    wh = letterboxed_wh(sizes.wh, sizes.image_hw, img_size)  # [N, 2] pixels
    if not len(wh):
        raise InputError(_no_boxes(sizes), where)
    slots, layers = cfg_anchors(cfg_text, cfg_path)
    before = anchor_stats(wh, _used(slots, layers), anchor_t)
    check = AnchorCheck(img_size=img_size, anchor_t=anchor_t, seed=seed,
                        generations=generations, boxes=len(wh), before=before,
                        anchors_before=_pairs(slots))
    if before.bpr >= FIT_BELOW and not fit:
        return check
    usable = len(fit_points(wh))
    if usable < len(slots):
        raise InputError(f"autoanchor: the cfg's anchors reach a best possible recall of "
                         f"{before.bpr:.3f} on the training labels at {img_size} px, below "
                         f"{FIT_BELOW}, so they would be fitted, but only {usable} label boxes "
                         f"are {MIN_FIT_SIZE:g} px or more, fewer than the cfg's {len(slots)} "
                         f"anchors: too few to fit them; add labels, or {NO_AUTOANCHOR}", where)
    fitted = fit_anchors(wh, len(slots), anchor_t, anchor_generator(seed), generations)
    text = anchored_cfg_text(cfg_text, fitted, cfg_path)  # in ascending area order
    written, _ = cfg_anchors(text, cfg_path)  # as the cfg holds them (2 decimals)
    after = anchor_stats(wh, _used(written, layers), anchor_t)
    kept = after.bpr > before.bpr
    return dataclasses.replace(check, after=after, anchors_after=_pairs(written), kept=kept,
                               cfg_text=text if kept else None)


def _no_boxes(sizes: LabelSizes) -> str:
    report, images = sizes.report, len(sizes.files)
    message = (f"autoanchor: the {images} training images hold no label boxes, so the anchors "
               "can neither be checked against the data nor fitted to it")
    if report.missing == images:
        message += (f"; none has a label file (for {sizes.files[0]} it would be "
                    f"{label_path_for(sizes.files[0])}: a labels/ folder beside images/, one "
                    ".txt per image)")
    else:
        message += f" ({report.missing} without a label file, {report.empty} with an empty one"
        message += f", {len(report.skipped)} bad rows skipped)" if report.skipped else ")"
    return message + f"; {NO_AUTOANCHOR}"


def _used(slots: np.ndarray, layers: list[np.ndarray]) -> np.ndarray:
    """[M, 2]: every layer's anchors, as the model has them (a slot two masks name, twice)."""
    return np.concatenate([slots[indices] for indices in layers], 0)


def _pairs(anchors: np.ndarray) -> Pairs:
    return tuple((float(w), float(h)) for w, h in anchors)


def _lists(pairs: Pairs) -> list[list[float]]:
    return [list(p) for p in pairs]


def _text(pairs: Pairs) -> str:
    return " ".join(f"{w:g},{h:g}" for w, h in pairs)


def _stats(stats: AnchorStats) -> str:
    return f"BPR {stats.bpr:.4f}, {stats.aat:.2f} anchors/target"
