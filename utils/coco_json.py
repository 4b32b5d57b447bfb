"""COCO json files: detections and, for a YOLO-label data set, its ground truth as a COCO
instances file, with matching ids, so pycocotools' COCOeval runs on the pair as it is.

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO("best.ground_truth.json")
    ev = COCOeval(gt, gt.loadRes("best.detections.json"), "bbox")
    ev.evaluate(); ev.accumulate(); ev.summarize()
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.boxes import xywhn_to_xyxy

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


def category_ids(names: list[str]) -> list[int]:
    """COCO category id of each class: the official 91-id numbering for the 80 COCO names,
    else 1, 2, ... (COCO ids start at 1)."""
    if tuple(names) == COCO80_NAMES:
        return list(COCO91_IDS)
    return list(range(1, len(names) + 1))


def image_ids(files: list[Path]) -> list[int]:
    """COCO image ids: the file stems when all are distinct integers (COCO's own file names),
    else 1, 2, ... in the data set's order."""
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


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def ground_truth_json(files: list[Path], shapes: list[tuple[int, int]],
                      labels: list[np.ndarray], names: list[str]) -> dict:
    """A COCO instances file for a YOLO-label data set: images with sizes, categories from the
    names, one annotation per label row (area = box area, not crowded)."""
    cats = category_ids(names)
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
                      classes: np.ndarray, names: list[str]) -> list[dict]:
    """COCO result records of one image; boxes [N, 4] xyxy original pixels. Values are written
    in full, so COCOeval sees exactly the boxes and scores this project's evaluator saw."""
    cats = category_ids(names)
    return [{"image_id": image_id, "category_id": cats[int(c)], "bbox": _xywh(box),
             "score": float(s)} for box, s, c in zip(boxes, scores, classes)]
