"""What a label conversion is (:class:`Conversion`: the YOLO rows of each image, its split, and
every box changed or left out with its reason) and the rules both readers share: a box becomes
a YOLO row clipped to its image (or is dropped or refused, said), a class name the names file
can hold, a split name the trainer can find labels under. The readers: :mod:`voc_reader`
(Pascal VOC / labelImg xml) and :mod:`coco_reader` (COCO instances json). Pure reading: nothing
is written here (``tools.convert_labels`` writes the project).

A conversion refuses (InputError naming the file, the entry and what was expected) what would
make a wrong project: a repeated image or category id, a bbox that is not 4 numbers, a class
name the names file cannot hold, two images for one annotation, a file name or split the trainer
cannot find the labels of. Box problems are events, not errors: a box outside the image is
clipped, one with no area left is dropped, a reversed one is refused, each with its reason.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# The trainer finds a label by replacing the last "images" folder of an image path with
# "labels"; a folder of either name below images/ would send it elsewhere.
RESERVED_FOLDERS = ("images", "labels")
SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SHOWN = 60  # characters of a bad value quoted in a message


@dataclass
class Conversion:
    """What a conversion did: labels per image, and every change or refusal with its reason."""
    names: list[str]
    labels: dict[str, list[str]] = field(default_factory=dict)  # "images/..." -> YOLO rows
    sources: dict[str, Path] = field(default_factory=dict)  # "images/..." -> source image
    splits: dict[str, list[str]] = field(default_factory=dict)  # split -> "images/..." paths
    events: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    per_class: Counter = field(default_factory=Counter)

    def note(self, where: str, kind: str, reason: str) -> None:
        self.counts[kind] += 1
        self.events.append(f"{where}: {kind}: {reason}")


def shown(value) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


def is_class_name(name) -> bool:
    """A name the names file can hold: a string, not blank, on one line (read_names strips)."""
    return isinstance(name, str) and bool(name.strip()) and \
        name.strip().splitlines() == [name.strip()]


def split_problem(split: str) -> str | None:
    """Why ``split`` cannot name a split (a list file and a folder under images/), or None."""
    if not SPLIT_NAME.fullmatch(split):
        return "a split name is letters, digits, '.', '_' or '-' (it names a file and a folder)"
    if split in RESERVED_FOLDERS:
        return ("the trainer finds a label by replacing the 'images' folder of the image's "
                "path with 'labels', so a split of that name hides its labels")
    return None


def yolo_row(cls: int, box: tuple[float, float, float, float], size: tuple[int, int],
             where: str, conv: Conversion) -> str | None:
    """A YOLO row (class, x, y, w, h normalized) for an xyxy pixel box in an image of ``size``
    (width, height), clipped to the image (said), or None for a box refused (xmin > xmax) or
    dropped (no area left)."""
    x1, y1, x2, y2 = box
    width, height = size
    if not all(math.isfinite(v) for v in box):
        conv.note(where, "refused", f"non-finite coordinates {box}")
        return None
    if x1 > x2 or y1 > y2:
        conv.note(where, "refused", f"xmin > xmax or ymin > ymax: {box}")
        return None
    clipped = (min(max(x1, 0), width), min(max(y1, 0), height),
               min(max(x2, 0), width), min(max(y2, 0), height))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        reason = "zero area" if x2 == x1 or y2 == y1 else "outside the image"
        conv.note(where, "dropped", f"{reason}: {box} in {width}x{height}")
        return None
    if clipped != tuple(box):
        conv.note(where, "clipped", f"{box} -> {clipped}: outside the {width}x{height} image")
    x1, y1, x2, y2 = clipped
    conv.per_class[conv.names[cls]] += 1
    conv.counts["boxes"] += 1
    return (f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
