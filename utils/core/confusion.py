"""The confusion matrix of a detector, as the ultralytics peers count it: the detections above a
score threshold matched one-to-one to the ground truth by IoU whatever their classes, the
classes of each matched pair counted, an unmatched ground truth as predicted "background", an
unmatched detection as true "background".

Rows are the true class, columns the predicted one; index ``C`` (the last) is background. The
cell background/background is always 0: nothing counts it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.ops import box_iou

CONF = 0.25  # ultralytics' confusion-matrix defaults
IOU = 0.45


def match_pairs(ious: np.ndarray, iou_thres: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs of ground truths and detections, greedily by IoU, highest first.

    ious [M, N] (ground truths x detections). Returns (ground truth [P], detection [P]) indices
    of the pairs with IoU above ``iou_thres``; equal IoUs go in (ground truth, detection) order.
    The greedy walk is what ultralytics' two ``np.unique`` passes approximate; it takes a pair
    whenever both ends are free, so no box is left out that a free partner overlaps.
    """
    gt, det = np.nonzero(ious > iou_thres)
    order = np.argsort(-ious[gt, det], kind="stable")
    free_gt, free_det = np.ones(ious.shape[0], bool), np.ones(ious.shape[1], bool)
    pairs = []
    for g, d in zip(gt[order].tolist(), det[order].tolist()):
        if free_gt[g] and free_det[d]:
            free_gt[g] = free_det[d] = False
            pairs.append((g, d))
    pairs_array = np.array(pairs, dtype=int).reshape(-1, 2)
    return pairs_array[:, 0], pairs_array[:, 1]


def confusion_matrix(detections: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                     num_classes: int, conf: float = CONF, iou: float = IOU) -> np.ndarray:
    """Counts [C+1, C+1] (rows true class, columns predicted class, C = background) over images.

    detections: per image [N, 6] x1, y1, x2, y2, score, class; labels: per image [M, 5] class,
    x1, y1, x2, y2 (the same pixels as the detections), in the same image order. Detections
    with score > ``conf`` take part; a pair needs IoU > ``iou`` (ultralytics' strict
    comparisons).
    """
    if len(detections) != len(labels):
        raise ValueError(f"{len(detections)} images of detections, {len(labels)} of labels")
    size = num_classes + 1
    matrix = np.zeros((size, size), dtype=np.int64)
    for det, lab in zip(detections, labels):
        det = np.asarray(det, dtype=float).reshape(-1, 6)
        lab = np.asarray(lab, dtype=float).reshape(-1, 5)
        det = det[det[:, 4] > conf]
        true_cls, pred_cls = lab[:, 0].astype(int), det[:, 5].astype(int)
        for name, cls in (("label", true_cls), ("detection", pred_cls)):
            if len(cls) and (cls.min() < 0 or cls.max() >= num_classes):
                raise ValueError(f"a {name} of class {cls.max()} with {num_classes} classes")
        ious = (box_iou(torch.from_numpy(lab[:, 1:5]), torch.from_numpy(det[:, :4])).numpy()
                if len(lab) and len(det) else np.zeros((len(lab), len(det))))
        gt, found = match_pairs(ious, iou)
        np.add.at(matrix, (true_cls[gt], pred_cls[found]), 1)
        missed = np.setdiff1d(np.arange(len(lab)), gt)
        np.add.at(matrix, (true_cls[missed], num_classes), 1)
        extra = np.setdiff1d(np.arange(len(det)), found)
        np.add.at(matrix, (num_classes, pred_cls[extra]), 1)
    return matrix


def normalize_by_true(matrix: np.ndarray) -> np.ndarray:
    """[C+1, C+1] counts -> the share of each true class (row) that went to each predicted class;
    NaN in the rows of a class with nothing counted (no such objects, nothing to divide)."""
    totals = matrix.sum(1, keepdims=True).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, matrix / totals, np.nan)
