"""COCO json files: detections and, for a YOLO-label data set, its ground truth as a COCO
instances file, with matching ids, so pycocotools' COCOeval runs on the pair as it is.

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO("best.ground_truth.json")
    ev = COCOeval(gt, gt.loadRes("best.detections.json"), "bbox")
    ev.evaluate(); ev.accumulate(); ev.summarize()

A project written by ``python -m tools.convert_labels coco`` holds ``coco_ids.json``: the source
file's category ids (in class order) and image ids (by image path in the project). Its ids are
used instead, so detections are scored by pycocotools against the original instances file.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np

from utils.base.errors import InputError
from utils.core.boxes import xywhn_to_xyxy

# The 80 COCO class names in YOLO order, and their ids among COCO's 91 (some ids are unused).
COCO80_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")
_UNUSED_COCO91 = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
COCO91_IDS = tuple(i for i in range(1, 91) if i not in _UNUSED_COCO91)
COCO_IDS_FILE = "coco_ids.json"  # written by tools.convert_labels beside images/ and labels/


def _project_file(path: Path) -> tuple[Path, str] | None:
    """(project root, path inside it) of an image under a folder named ``images``."""
    parts = Path(os.path.normpath(path)).parts
    if "images" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:i]) if i else Path("."), "/".join(parts[i:])


def source_ids(files: list[Path]) -> dict | None:
    """The converted project's ``coco_ids.json`` for these images, or None."""
    found = _project_file(Path(files[0])) if files else None
    if found is None or not (found[0] / COCO_IDS_FILE).is_file():
        return None
    return json.loads((found[0] / COCO_IDS_FILE).read_text())


def category_ids(names: list[str], files: list[Path] | None = None) -> list[int]:
    """COCO category id of each class: the source file's for a converted COCO project (names
    checked), the official 91-id numbering for the 80 COCO names, else 1, 2, ..."""
    ids = source_ids(files) if files else None
    if ids is not None and [c["name"] for c in ids["categories"]] == list(names):
        return [int(c["id"]) for c in ids["categories"]]
    if ids is not None:
        print(f"note: the class names are not those of {COCO_IDS_FILE}; category ids 1..N")
    if tuple(names) == COCO80_NAMES:
        return list(COCO91_IDS)
    return list(range(1, len(names) + 1))


def image_ids(files: list[Path]) -> list[int]:
    """COCO image ids: the source file's for a converted COCO project, else the file stems when
    all are distinct integers (COCO's own file names), else 1, 2, ... in the data set's order."""
    ids = source_ids(files)
    if ids is not None:
        mine = [ids["images"].get(_project_file(Path(f))[1]) for f in files]
        if None not in mine and len(set(mine)) == len(mine):
            return mine
        print(f"note: images not in {COCO_IDS_FILE} (added after the conversion?): image ids "
              "are the data set's own, not the source file's")
    stems = [Path(f).stem for f in files]
    if all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(files) + 1))


def labels_to_pixels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """YOLO rows [N, 5] (class, x, y, w, h normalized) -> [N, 4] xyxy float64 pixels of an image
    of ``shape`` (height, width), clipped to it."""
    h, w = shape
    boxes = xywhn_to_xyxy(labels.astype(np.float64), w, h)[:, 1:5]
    return np.clip(boxes, 0, np.array([w, h, w, h], dtype=np.float64))


def bboxes_to_xyxy(bboxes: list[list[float]]) -> np.ndarray:
    """COCO bboxes [x, y, width, height] -> [N, 4] xyxy float64: the inverse of the bbox
    this module writes."""
    b = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate((b[:, :2], b[:, :2] + b[:, 2:]), 1)


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def ground_truth_json(files: list[Path], shapes: list[tuple[int, int]],
                      labels: list[np.ndarray], names: list[str]) -> dict:
    """A COCO instances file for a YOLO-label data set: images with sizes, categories from the
    names, one annotation per label row (area = box area, not crowded)."""
    cats = category_ids(names, files)
    out = {"images": [], "annotations": [],
           "categories": [{"id": c, "name": n} for c, n in zip(cats, names)]}
    for image_id, path, shape, rows in zip(image_ids(files), files, shapes, labels):
        out["images"].append({"id": image_id, "file_name": Path(path).name,
                              "height": int(shape[0]), "width": int(shape[1])})
        for cls, box in zip(rows[:, 0].astype(int), labels_to_pixels(rows, shape)):
            bbox = _xywh(box)
            out["annotations"].append({"id": len(out["annotations"]) + 1, "image_id": image_id,
                                       "category_id": cats[cls], "bbox": bbox,
                                       "area": bbox[2] * bbox[3], "iscrowd": 0})
    return out


def detection_records(image_id: int, boxes: np.ndarray, scores: np.ndarray,
                      classes: np.ndarray, names: list[str],
                      cats: list[int] | None = None) -> list[dict]:
    """COCO result records of one image; boxes [N, 4] xyxy original pixels; ``cats`` the
    category id of each class (default: :func:`category_ids` of ``names``). Values are written
    in full, so COCOeval sees exactly the boxes and scores this project's evaluator saw."""
    cats = cats if cats is not None else category_ids(names)
    return [{"image_id": image_id, "category_id": cats[int(c)], "bbox": _xywh(box),
             "score": float(s)} for box, s, c in zip(boxes, scores, classes)]


def empty_detections_message(detections: list, conf_thres: float) -> str | None:
    """Why pycocotools cannot score ``detections``, or None: its ``loadRes`` fails on an empty
    list with a bare IndexError."""
    if detections:
        return None
    return (f"no detections above --conf-thres {conf_thres}: pycocotools cannot load an empty "
            "result list (its loadRes ends in an IndexError); every AP and AR is 0 by our "
            "evaluator")


def pycocotools_stats(truth: Path, detections: Path) -> list[float]:
    """pycocotools' COCOeval on the files ``truth`` and ``detections``: its 12 numbers
    (``COCOeval.stats``, in its order)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise InputError("--pycocotools needs pycocotools (pip install pycocotools)") from None
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(truth))
        coco = COCOeval(gt, gt.loadRes(str(detections)), "bbox")
        coco.evaluate()
        coco.accumulate()
        coco.summarize()
    return [float(x) for x in coco.stats]


def largest_difference(ours: dict[str, float], stats: list[float]) -> float:
    """The largest |ours - pycocotools'| over the 12 numbers (``ours`` in COCOeval's order)."""
    return max(abs(a - b) for a, b in zip(ours.values(), stats))


def pycocotools_table(ours: dict[str, float], stats: list[float]) -> str:
    """pycocotools' 12 numbers beside ``ours`` (this evaluator's, by name in COCOeval's order)
    and their differences."""
    lines = [f"{'metric':>10} {'ours':>9} {'pycocotools':>11} {'difference':>10}"]
    for (name, mine), theirs in zip(ours.items(), stats):
        lines.append(f"{name:>10} {mine:9.5f} {theirs:11.5f} {mine - theirs:10.2g}")
    lines.append(f"largest |difference|: {largest_difference(ours, stats):.3g}")
    return "\n".join(lines)
