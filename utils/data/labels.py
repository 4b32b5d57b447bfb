"""YOLO label files: one object a line, ``class x_center y_center width height``, coordinates
normalized to the image size (0..1).

A bad row is a data error: it is skipped with a warning naming file, line and what was expected,
and counted; training goes on with the rest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Coordinates written with rounding may overshoot 1 by a hair.
TOLERANCE = 1e-6


@dataclass
class LabelReport:
    """What reading the label files found."""
    missing: int = 0  # images with no label file: allowed, they have no objects
    empty: int = 0
    boxes: int = 0
    skipped: list[str] = field(default_factory=list)  # one message per skipped row


def parse_label_text(text: str, num_classes: int | None, source: str = "<labels>"
                     ) -> tuple[np.ndarray, list[str]]:
    """Parse label text into (N, 5) float32 rows [class, x, y, w, h] and a list of warnings.

    ``num_classes`` None accepts any non-negative integer class (``--single-cls``, where every
    class becomes 0 anyway). Never raises on bad content: every bad row becomes a warning and is
    left out.
    """
    rows: list[list[float]] = []
    warnings: list[str] = []
    seen: set[tuple[float, ...]] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{source}:{number}: "
        fields = line.split()
        if len(fields) != 5:
            warnings.append(where + f"expected 5 columns 'class x y w h', got {len(fields)}")
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            warnings.append(where + f"non-numeric value in {line!r}")
            continue
        cls, x, y, w, h = values
        if not all(math.isfinite(v) for v in values):
            warnings.append(where + f"non-finite value in {line!r}")
        elif cls != int(cls) or cls < 0 or (num_classes is not None and cls >= num_classes):
            allowed = "0 or more" if num_classes is None else f"in 0..{num_classes - 1}"
            warnings.append(where + f"class {fields[0]} is not an integer {allowed}")
        elif min(x, y, w, h) < 0:
            warnings.append(where + f"negative value in {line!r}, coordinates must be in 0..1")
        elif max(x, y, w, h) > 1 + TOLERANCE:
            warnings.append(where + f"coordinate above 1 in {line!r} (expected normalized "
                            "coordinates)")
        elif w <= 0 or h <= 0:
            warnings.append(where + f"zero width or height in {line!r}")
        elif tuple(values) in seen:
            warnings.append(where + "duplicate of an earlier row")
        else:
            seen.add(tuple(values))
            rows.append([cls, min(x, 1.0), min(y, 1.0), min(w, 1.0), min(h, 1.0)])
    return np.array(rows, dtype=np.float32).reshape(-1, 5), warnings


def read_labels(paths: list[Path], num_classes: int, single_cls: bool = False
                ) -> tuple[list[np.ndarray], LabelReport]:
    """Read every label file; a missing file means an image without objects.

    ``single_cls``: every class becomes 0, so the class is only checked to be a non-negative
    integer (checking it against ``num_classes`` first would drop every box of class 1 and up).
    """
    report = LabelReport()
    labels = []
    for path in paths:
        if not path.is_file():
            report.missing += 1
            labels.append(np.zeros((0, 5), dtype=np.float32))
            continue
        try:
            # utf-8-sig: a byte-order mark (Windows editors) would make the first row non-numeric.
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            report.skipped.append(f"{path}: not a text file, all its rows skipped")
            labels.append(np.zeros((0, 5), dtype=np.float32))
            continue
        rows, warnings = parse_label_text(text, None if single_cls else num_classes, str(path))
        report.skipped.extend(warnings)
        if single_cls:
            rows[:, 0] = 0
        report.empty += len(rows) == 0
        report.boxes += len(rows)
        labels.append(rows)
    return labels, report


def class_weights(labels: list[np.ndarray], num_classes: int) -> np.ndarray:
    """ultralytics' ``labels_to_class_weights``: each class's inverse box count over the set
    (a class without boxes counts as one), normalized to sum 1. ``labels``: per image, its
    (N, 5) rows [class, x, y, w, h]."""
    rows = np.concatenate(labels, 0) if labels else np.zeros((0, 5))
    counts = np.bincount(rows[:, 0].astype(int), minlength=num_classes).astype(np.float64)
    counts[counts == 0] = 1
    weights = 1 / counts
    return weights / weights.sum()


def image_weights(labels: list[np.ndarray], num_classes: int) -> np.ndarray:
    """ultralytics' ``labels_to_image_weights`` with :func:`class_weights`: each image's weight
    is the sum of its boxes' class weights, so images of rare classes are drawn more often and
    an image without boxes never (ultralytics also multiplies by (1 - mAP per class)^2 of the
    last evaluation; left out here, so the order depends on the labels alone and repeats)."""
    per_class = class_weights(labels, num_classes)
    return np.array([per_class[rows[:, 0].astype(int)].sum() for rows in labels])
