"""The sizes of a set's label boxes without loading its images: each box's normalized width
and height, and the (height, width) of its image read from the image's header. What the
anchor check of a new run (autoanchor) measures, before the dataset itself is built."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.base.errors import ImageError
from utils.data.data_config import label_path_for
from utils.data.image_io import image_size
from utils.data.labels import LabelReport, read_labels


@dataclass(frozen=True)
class LabelSizes:
    """Every label box of a set: ``wh`` [N, 2] its (width, height) normalized to its image,
    ``image_hw`` [N, 2] that image's (height, width) in pixels; the images read, and what
    reading their label files found."""
    wh: np.ndarray
    image_hw: np.ndarray
    files: tuple[Path, ...]
    report: LabelReport


def label_sizes(image_files: list[Path], num_classes: int, single_cls: bool = False
                ) -> LabelSizes:
    """The label sizes of ``image_files`` (their label files found as the dataset finds them,
    rows checked and skipped as it does). An image that cannot be read is left out, as the
    dataset leaves it out."""
    shapes, files, unreadable = [], [], []
    for path in image_files:
        try:
            shapes.append(image_size(path))
        except ImageError as err:
            unreadable.append(str(err))
            continue
        files.append(path)
    if not files:  # the dataset's own words for it
        raise ImageError(f"none of the {len(image_files)} images could be read: "
                         + "; ".join(unreadable[:3]))
    labels, report = read_labels([label_path_for(p) for p in files], num_classes, single_cls)
    wh = np.concatenate([rows[:, 3:5] for rows in labels] + [np.zeros((0, 2))], 0)
    image_hw = np.repeat(np.asarray(shapes, dtype=np.float64).reshape(-1, 2),
                         [len(rows) for rows in labels], axis=0)
    return LabelSizes(wh=wh.astype(np.float64), image_hw=image_hw, files=tuple(files),
                      report=report)
