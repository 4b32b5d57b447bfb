"""Detection metrics: matching predictions to labels, precision, recall, AP per class.

AP is the area under the precision envelope sampled at 101 recall points (COCO's rule); mAP@0.5
uses IoU 0.5, mAP@0.5:0.95 the mean over IoU 0.50, 0.55, ..., 0.95.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from utils.boxes import box_iou

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)


def match_predictions(detections: torch.Tensor, labels: torch.Tensor,
                      iou_thresholds: torch.Tensor = IOU_THRESHOLDS) -> torch.Tensor:
    """Mark true positives, one label matched at most once per IoU threshold.

    detections [N, 6] (x1, y1, x2, y2, score, class); labels [M, 5] (class, x1, y1, x2, y2), same
    pixels. Returns bool [N, T]: detection n is a true positive at threshold t.
    """
    correct = torch.zeros(len(detections), len(iou_thresholds), dtype=torch.bool)
    if not len(detections) or not len(labels):
        return correct
    iou = box_iou(labels[:, 1:5], detections[:, :4]).cpu()  # [M, N]
    same_class = (labels[:, 0:1] == detections[:, 5]).cpu()
    scores = detections[:, 4].cpu()
    for k, threshold in enumerate(iou_thresholds.tolist()):
        label_i, det_i = torch.nonzero((iou >= threshold) & same_class, as_tuple=True)
        if not len(label_i):
            continue
        # Greedy by IoU, then by score; each label and each detection used once.
        pair_iou = iou[label_i, det_i].numpy()
        order = np.lexsort((-scores[det_i].numpy(), -pair_iou))
        label_i, det_i = label_i.numpy()[order], det_i.numpy()[order]
        _, first = np.unique(det_i, return_index=True)
        first = np.sort(first)
        label_i, det_i = label_i[first], det_i[first]
        _, first = np.unique(label_i, return_index=True)
        correct[det_i[first], k] = True
    return correct


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP of one precision-recall curve (points in order of decreasing score), COCO's rule: the
    mean over recall r = 0, 0.01, ..., 1 of the best precision at any recall >= r (0 where the
    recall is never reached). A perfect detector scores exactly 1."""
    if not len(recall):
        return 0.0
    envelope = np.flip(np.maximum.accumulate(np.flip(precision)))
    thresholds = np.linspace(0, 1, 101)
    first = np.searchsorted(recall, thresholds, side="left")
    reached = first < len(recall)
    return float(np.where(reached, envelope[np.minimum(first, len(recall) - 1)], 0.0).mean())


@dataclass
class ClassMetrics:
    """Per-class results; arrays are sized [K] (classes that had labels), ap is [K, T]."""
    classes: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    ap: np.ndarray
    label_counts: np.ndarray


def ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray,
                 target_cls: np.ndarray) -> ClassMetrics:
    """AP, and P, R, F1 at the score threshold that maximizes the mean F1 over classes.

    tp [N, T] bool, conf [N], pred_cls [N], target_cls [M].
    """
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, counts = np.unique(target_cls, return_counts=True)
    grid = np.linspace(0, 1, 1000)
    ap = np.zeros((len(classes), tp.shape[1]))
    p_curve, r_curve = np.zeros((len(classes), len(grid))), np.zeros((len(classes), len(grid)))
    for k, (c, n_labels) in enumerate(zip(classes, counts)):
        mine = pred_cls == c
        if not mine.any():
            continue
        tp_cum = tp[mine].cumsum(0)
        fp_cum = (~tp[mine]).cumsum(0)
        recall = tp_cum / n_labels
        precision = tp_cum / (tp_cum + fp_cum)
        # Curves against a falling score threshold, for the best-F1 operating point.
        r_curve[k] = np.interp(-grid, -conf[mine], recall[:, 0], left=0)
        p_curve[k] = np.interp(-grid, -conf[mine], precision[:, 0], left=1)
        for t in range(tp.shape[1]):
            ap[k, t] = compute_ap(recall[:, t], precision[:, t])
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
    best = int(f1_curve.mean(0).argmax()) if len(classes) else 0
    p, r, f1 = p_curve[:, best], r_curve[:, best], f1_curve[:, best]
    return ClassMetrics(classes.astype(int), p, r, f1, ap, counts)
