"""Hyperparameter files: a yaml mapping with exactly the keys of data/hyp.scratch.yaml."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import yaml

from utils.base.errors import InputError

# The 2020 ultralytics recipe, kept for reference: every hyp file has exactly its keys.
SCRATCH_HYP = Path(__file__).resolve().parents[2] / "data" / "hyp.scratch.yaml"
# The own-data recipe: what a run uses when neither --hyp nor the .data file names a hyp file.
DEFAULT_HYP = SCRATCH_HYP.with_name("hyp.own.yaml")
STRING_KEYS = {"iou_type": ("giou", "ciou"), "optimizer": ("sgd", "adam")}
# Keys added after runs had been made, with the value that turns each one off. A hyp FILE must
# still name them (load_hyp refuses a missing key), but a checkpoint or run folder from before
# them lacks them: its hyp gets these values (:func:`with_added_keys`), so it trains on as it
# did.
ADDED_KEYS = {"label_smoothing": 0.0, "mixup": 0.0, "scale_x_y": 1.0, "close_mosaic": 0.0}
# Their allowed values. scale_x_y: the centre decode a cfg's [yolo] layers get where they set
# none (models.layers.YOLOLayer; at 2 the loss assigns neighbouring cells too). close_mosaic:
# the last epochs trained without mosaic, a whole number.
ADDED_RANGES = {"label_smoothing": (0.0, 1.0), "mixup": (0.0, 1.0), "scale_x_y": (1.0, 3.0),
                "close_mosaic": (0.0, 100_000.0)}
WHOLE_KEYS = ("close_mosaic",)


def load_hyp(path: str | Path = DEFAULT_HYP) -> dict:
    """Read and check a hyperparameter file: every key known, every value a number (or one of
    the allowed words), none missing."""
    path = Path(path)
    if not path.is_file():
        raise InputError("hyperparameter file not found", path)
    try:
        hyp = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise InputError(f"not valid yaml: {getattr(err, 'problem', err)}", path,
                         None if line is None else line + 1) from None
    if not isinstance(hyp, dict):
        raise InputError("expected a mapping of hyperparameter: value", path)
    known = yaml.safe_load(SCRATCH_HYP.read_text())
    lines = {k: n for n, raw in enumerate(path.read_text().splitlines(), 1)
             for k in [raw.split(":", 1)[0].strip()] if ":" in raw}
    for key, value in hyp.items():
        if key not in known:
            raise InputError(f"unknown hyperparameter {key!r}, expected one of {sorted(known)}",
                             path, lines.get(key))
        if key in STRING_KEYS:
            if value not in STRING_KEYS[key]:
                raise InputError(f"{key}: {value!r}, expected one of {STRING_KEYS[key]}", path,
                                 lines.get(key))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{key}: {value!r} is not a number", path, lines.get(key))
        elif key in ADDED_RANGES and not ADDED_RANGES[key][0] <= value <= ADDED_RANGES[key][1]:
            low, high = ADDED_RANGES[key]
            raise InputError(f"{key}: {value!r}, expected a number in {low:g}..{high:g}", path,
                             lines.get(key))
        elif key in WHOLE_KEYS and value != int(value):
            raise InputError(f"{key}: {value!r}, expected a whole number of epochs", path,
                             lines.get(key))
    missing = sorted(set(known) - set(hyp))
    if missing:
        added = [f"{k}: {ADDED_KEYS[k]:g}" for k in missing if k in ADDED_KEYS]
        hint = (f" (keys added since the file was written; {', '.join(added)} keeps its "
                "training as it was)" if added else "")
        raise InputError(f"missing hyperparameters: {missing}{hint}", path)
    return {k: (v if k in STRING_KEYS else float(v)) for k, v in hyp.items()}


def scale_hyp(hyp: dict, num_classes: int, num_heads: int, img_size: int,
              nominal_batch: int) -> dict:
    """Gains in the hyp file are for 80 classes, 3 yolo heads, 640 px and a batch of 64; adapt
    them so the loss parts keep their balance (the yolov5 rule). Weight decay follows the
    batch actually accumulated."""
    hyp = dict(hyp)
    hyp["box"] *= 3 / num_heads
    hyp["cls"] *= num_classes / 80 * 3 / num_heads
    hyp["obj"] *= (img_size / 640) ** 2 * 3 / num_heads
    hyp["weight_decay"] *= nominal_batch / hyp["nbs"]
    return hyp


def with_added_keys(hyp: Mapping) -> tuple[dict, list[str]]:
    """``hyp`` (a checkpoint's) with each key of :data:`ADDED_KEYS` it lacks set to its off
    value; and the keys so filled, for the note that says so."""
    filled = [k for k in ADDED_KEYS if k not in hyp]
    return {**hyp, **{k: ADDED_KEYS[k] for k in filled}}, filled


def digest_without_added_keys(path: str | Path) -> str:
    """SHA-256 of a hyp file's bytes without the lines that set an :data:`ADDED_KEYS` key to its
    off value: the digest the same file had before those keys were added to it, so a run
    started then still finds its hyp file unchanged."""
    kept = []
    for line in Path(path).read_bytes().splitlines(keepends=True):
        key, colon, value = line.decode(errors="replace").partition("#")[0].partition(":")
        if colon and key.strip() in ADDED_KEYS and _number(value) == ADDED_KEYS[key.strip()]:
            continue
        kept.append(line)
    return hashlib.sha256(b"".join(kept)).hexdigest()


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None
