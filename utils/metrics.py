"""Detection metrics by COCO's rules: the 12 numbers pycocotools' COCOeval prints, per-class AP,
and precision, recall and F1 at the best-F1 score threshold.

The rules, as COCOeval applies them (and tests/utils/test_metrics.py checks against it):
- per image and class, detections in score order (stable), the best 100 kept;
- each detection takes, among the ground truths not yet matched at that IoU threshold, the one
  of highest IoU at or above it (the last of equal ones), preferring boxes inside the area range
  over those outside it (which are ignored, as are unmatched detections outside it);
- precision at 101 recall points, on the envelope of the precision curve, over IoU 0.50:0.95;
- areas: all, small (< 32^2 px), medium (32^2..96^2), large (> 96^2), in original image pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from utils.boxes import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = (1, 10, 100)
AREA_RANGES = {"all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e5 ** 2)}
_AREA_LOW = np.array([low for low, _ in AREA_RANGES.values()])
_AREA_HIGH = np.array([high for _, high in AREA_RANGES.values()])
# The 12 summary numbers: (name, AP or AR, IoU threshold index or None for 0.50:0.95, area,
# max detections).
SUMMARY = (("AP", True, None, "all", 100), ("AP50", True, 0, "all", 100),
           ("AP75", True, 5, "all", 100), ("AP_small", True, None, "small", 100),
           ("AP_medium", True, None, "medium", 100), ("AP_large", True, None, "large", 100),
           ("AR1", False, None, "all", 1), ("AR10", False, None, "all", 10),
           ("AR100", False, None, "all", 100), ("AR_small", False, None, "small", 100),
           ("AR_medium", False, None, "medium", 100), ("AR_large", False, None, "large", 100))


@dataclass
class ImageDetections:
    """One image's ground truth and detections, boxes xyxy in original image pixels.

    gt_boxes [M, 4], gt_classes [M]; boxes [N, 4], scores [N], classes [N]. ``image_id`` orders
    the images as COCOeval does (sorted ids), which decides ties in score across images.
    """
    image_id: int
    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


@dataclass
class CocoMetrics:
    """What :func:`coco_evaluate` computes.

    stats: the 12 summary numbers in COCOeval's order (-1 where nothing was there to measure);
    classes [K] (those with ground truth), ap [K] (0.50:0.95), ap50 [K], and precision, recall,
    f1 [K] at the score threshold that maximizes the mean F1 over classes (IoU 0.5).
    """
    stats: np.ndarray
    classes: np.ndarray
    label_counts: np.ndarray
    ap: np.ndarray
    ap50: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def named(self) -> dict[str, float]:
        return {name: float(v) for (name, *_), v in zip(SUMMARY, self.stats)}


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def match_detections(ious: np.ndarray, gt_ignore: np.ndarray,
                     thresholds: np.ndarray = IOU_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's greedy matching for one image and class.

    ious [D, G] (detections in score order), gt_ignore [G] bool. Returns (matched [T, D] bool,
    matched_ignored [T, D] bool: matched to an ignored ground truth).
    """
    num_dets, num_gts = ious.shape
    matched = np.zeros((len(thresholds), num_dets), dtype=bool)
    on_ignored = np.zeros_like(matched)
    if not num_dets or not num_gts:
        return matched, on_ignored
    limits = np.minimum(thresholds, 1 - 1e-10)[:, None]  # [T, 1]
    if num_gts == 1:  # the common case, vectorized: the first detection that reaches it
        reaches = ious[:, 0][None, :] >= limits  # [T, D]
        first = reaches.argmax(1)
        hit = reaches[np.arange(len(thresholds)), first]
        matched[np.flatnonzero(hit), first[hit]] = True
        return matched, matched & gt_ignore[0]
    taken = np.zeros((len(thresholds), num_gts), dtype=bool)
    # A detection with no IoU above the lowest threshold matches nothing at any threshold.
    for d in np.flatnonzero(ious.max(1) >= limits[0, 0]):
        candidates = ~taken & (ious[d][None, :] >= limits)  # [T, G]
        choice = np.full(len(thresholds), -1)
        for group in (~gt_ignore, gt_ignore):  # regular ground truth first, then ignored
            allowed = candidates & group[None, :]
            scores = np.where(allowed, ious[d][None, :], -1.0)
            # the best IoU; among equal ones the last, as COCOeval's `<` comparison leaves it
            last_best = num_gts - 1 - np.argmax(scores[:, ::-1], axis=1)
            pick = (choice < 0) & allowed.any(1)
            choice[pick] = last_best[pick]
        hit = choice >= 0
        matched[hit, d] = True
        on_ignored[hit, d] = gt_ignore[choice[hit]]
        taken[np.flatnonzero(hit), choice[hit]] = True
    return matched, on_ignored


@dataclass
class _ImageClassEval:
    scores: np.ndarray      # [D] in score order
    matched: np.ndarray     # [A, T, D]
    ignored: np.ndarray     # [A, T, D]
    valid_gts: np.ndarray   # [A] ground truths inside each area range


def _evaluate_image_class(ious: np.ndarray, gt_boxes: np.ndarray, boxes: np.ndarray,
                          scores: np.ndarray) -> _ImageClassEval:
    """One image and class: ``ious`` [D, G] of its detections (already in score order and cut
    to the most detections kept) against its ground truth, matched for every area range."""
    gt_areas, det_areas = _areas(gt_boxes), _areas(boxes)
    gt_ignore = (gt_areas[None] < _AREA_LOW[:, None]) | (gt_areas[None] > _AREA_HIGH[:, None])
    outside = (det_areas[None] < _AREA_LOW[:, None]) | (det_areas[None] > _AREA_HIGH[:, None])
    base, _ = match_detections(ious, np.zeros(len(gt_boxes), dtype=bool))
    matched = np.repeat(base[None], len(AREA_RANGES), axis=0)  # [A, T, D]
    # All ground truth on one side of a range: preferring regular boxes changes nothing, so the
    # matching is the one without ignored boxes. Only a range that splits them is matched anew.
    on_ignored = matched & gt_ignore.all(1)[:, None, None]
    for a in np.flatnonzero(gt_ignore.any(1) & ~gt_ignore.all(1)):
        gt_order = np.argsort(gt_ignore[a], kind="mergesort")  # ignored ones last
        matched[a], on_ignored[a] = match_detections(ious[:, gt_order], gt_ignore[a][gt_order])
    ignored = on_ignored | (~matched & outside[:, None, :])
    return _ImageClassEval(scores, matched, ignored, (~gt_ignore).sum(1))


def _evaluate_image(image: ImageDetections, classes: np.ndarray, max_det: int
                    ) -> dict[int, _ImageClassEval]:
    """Per class present in the image (ground truth or detections), its evaluation; one IoU
    matrix for the whole image."""
    ious = (box_iou(torch.from_numpy(image.boxes), torch.from_numpy(image.gt_boxes)).numpy()
            if len(image.boxes) and len(image.gt_boxes)
            else np.zeros((len(image.boxes), len(image.gt_boxes))))
    out = {}
    for cls in np.intersect1d(classes, np.union1d(image.gt_classes, image.classes)):
        gt = np.flatnonzero(image.gt_classes == cls)
        det = np.flatnonzero(image.classes == cls)
        det = det[np.argsort(-image.scores[det], kind="mergesort")[:max_det]]
        out[int(cls)] = _evaluate_image_class(ious[np.ix_(det, gt)], image.gt_boxes[gt],
                                              image.boxes[det], image.scores[det])
    return out


def _precision_at_recall_points(tp: np.ndarray, fp: np.ndarray, num_gts: int
                                ) -> tuple[np.ndarray, float]:
    """Precision [R] at the 101 recall points, and the final recall, of one ranked list."""
    points = np.zeros(len(RECALL_POINTS))
    if not len(tp):
        return points, 0.0
    tp_sum, fp_sum = np.cumsum(tp).astype(float), np.cumsum(fp).astype(float)
    recall = tp_sum / num_gts
    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    first = np.searchsorted(recall, RECALL_POINTS, side="left")
    reached = first < len(recall)
    points[reached] = envelope[first[reached]]
    return points, float(recall[-1])


def coco_evaluate(images: list[ImageDetections]) -> CocoMetrics:
    """COCOeval's bbox evaluation of ``images`` (see the module docstring for the rules)."""
    images = sorted(images, key=lambda im: im.image_id)
    classes, label_counts = np.unique(np.concatenate(
        [im.gt_classes for im in images] or [np.zeros(0)]).astype(int), return_counts=True)
    areas, max_dets = list(AREA_RANGES), MAX_DETECTIONS
    precision = -np.ones((len(IOU_THRESHOLDS), len(RECALL_POINTS), len(classes), len(areas),
                          len(max_dets)))
    recall = -np.ones((len(IOU_THRESHOLDS), len(classes), len(areas), len(max_dets)))
    operating = []  # per class: (tp at IoU 0.5, scores), area all, 100 detections
    per_image = [_evaluate_image(im, classes, max_dets[-1]) for im in images]
    for k, cls in enumerate(classes):
        evals = [found[int(cls)] for found in per_image if int(cls) in found]
        for m, max_det in enumerate(max_dets):
            scores = np.concatenate([e.scores[:max_det] for e in evals])
            order = np.argsort(-scores, kind="mergesort")
            for a in range(len(areas)):
                num_gts = int(sum(e.valid_gts[a] for e in evals))
                if not num_gts:
                    continue
                hit = np.concatenate([e.matched[a][:, :max_det] for e in evals], 1)[:, order]
                skip = np.concatenate([e.ignored[a][:, :max_det] for e in evals], 1)[:, order]
                for t in range(len(IOU_THRESHOLDS)):
                    precision[t, :, k, a, m], recall[t, k, a, m] = _precision_at_recall_points(
                        hit[t] & ~skip[t], ~hit[t] & ~skip[t], num_gts)
                if a == 0 and max_det == max_dets[-1]:
                    operating.append((hit[0] & ~skip[0], scores[order], num_gts))
    stats = np.array([_summarize(precision, recall, *spec[1:]) for spec in SUMMARY])
    all_100 = precision[:, :, :, 0, -1]  # [T, R, K]
    ap = np.array([_mean_valid(all_100[:, :, k]) for k in range(len(classes))])
    ap50 = np.array([_mean_valid(all_100[0, :, k]) for k in range(len(classes))])
    p, r, f1 = best_f1_point(operating)
    return CocoMetrics(stats, classes, label_counts, ap, ap50, p, r, f1)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def _summarize(precision, recall, is_ap: bool, iou_index: int | None, area: str,
               max_det: int) -> float:
    a, m = list(AREA_RANGES).index(area), MAX_DETECTIONS.index(max_det)
    values = precision[..., a, m] if is_ap else recall[..., a, m]
    if iou_index is not None:
        values = values[iou_index]
    return _mean_valid(values)


def best_f1_point(ranked: list[tuple[np.ndarray, np.ndarray, int]]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 per class [K] at the one score threshold that maximizes the
    mean F1 over classes. ``ranked``: per class (true positives [D] in score order, scores [D],
    ground-truth count)."""
    grid = np.linspace(0, 1, 1000)
    p_curve, r_curve = np.zeros((len(ranked), len(grid))), np.zeros((len(ranked), len(grid)))
    for k, (tp, scores, num_gts) in enumerate(ranked):
        if not len(tp):
            continue
        tp_sum = np.cumsum(tp)
        recall = tp_sum / num_gts
        precision = tp_sum / np.arange(1, len(tp) + 1)
        r_curve[k] = np.interp(-grid, -scores, recall, left=0)
        p_curve[k] = np.interp(-grid, -scores, precision, left=1)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
    best = int(f1_curve.mean(0).argmax()) if len(ranked) else 0
    return p_curve[:, best], r_curve[:, best], f1_curve[:, best]
