"""Detection metrics by COCO's rules: the 12 numbers pycocotools' COCOeval prints, per-class AP,
and precision, recall and F1 at the best-F1 score threshold.

The rules, as COCOeval applies them (and tests/utils/core/test_metrics.py checks against it):
- per image and class, detections in score order (stable), the best 100 kept;
- each detection takes, among the ground truths not yet matched at that IoU threshold, the one
  of highest IoU at or above it (the last of equal ones), preferring boxes inside the area range
  over those outside it (which are ignored, as are unmatched detections outside it);
- precision at 101 recall points, on the envelope of the precision curve, over IoU 0.50:0.95;
- areas: all, small (< 32^2 px), medium (32^2..96^2), large (> 96^2), in original image pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from utils.core.boxes import box_iou

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
    f1 [K] at the score threshold that maximizes the mean F1 over classes (IoU 0.5), that
    threshold ``f1_conf`` (on :data:`CONFIDENCE_GRID`; 0.0 where the F1 is 0 at every
    threshold); ``table``: the per-image matching they were accumulated from.
    """
    stats: np.ndarray
    classes: np.ndarray
    label_counts: np.ndarray
    ap: np.ndarray
    ap50: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    f1_conf: float
    table: MatchTable

    def named(self) -> dict[str, float]:
        return {name: float(v) for (name, *_), v in zip(SUMMARY, self.stats)}


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _match_batch(ious: np.ndarray, gt_ignore: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """COCOeval's greedy matching for B settings at once, all detections together.

    ious [D, G] (detections in score order), gt_ignore [B, G] bool, limits [B] IoU thresholds.
    Returns the ground truth each detection takes [B, D] (-1: none).

    COCOeval walks the detections in score order, each taking its preferred free ground truth
    (regular before ignored, then the highest IoU at or above the threshold, then the last of
    equal ones). Every ground truth prefers the earlier detection, the same order for all, so
    that walk's result is the one stable matching there is, and Gale-Shapley finds it in
    rounds: each free detection proposes to its preferred ground truth not yet lost, each
    ground truth keeps the earliest proposer. A round is numpy over [B, D, G]; rounds are few
    (one when no two detections want the same box).
    """
    num_dets, num_gts = ious.shape
    batch = len(limits)
    still_open = ious[None] >= limits[:, None, None]  # [B, D, G] not yet lost
    regular = ~gt_ignore[:, None, :]  # [B, 1, G]
    holder = np.full((batch, num_gts), num_dets)  # [B, G]; num_dets: held by none
    free = np.ones((batch, num_dets), dtype=bool)
    dets, rows = np.arange(num_dets), np.arange(batch)[:, None]
    while True:
        options = still_open & free[:, :, None]
        proposing = options.any(2)  # [B, D]
        if not proposing.any():
            break
        preferred = options & regular
        options = np.where(preferred.any(2, keepdims=True), preferred, options)
        # the highest IoU; among equal ones the last, as COCOeval's `<` comparison leaves it
        iou = np.where(options, ious[None], -1.0)
        choice = num_gts - 1 - np.argmax(iou[:, :, ::-1], axis=2)  # [B, D]
        proposal = proposing[:, :, None] & (choice[:, :, None] == np.arange(num_gts))
        earliest = np.where(proposal.any(1), proposal.argmax(1), num_dets)  # [B, G]
        winner = np.minimum(holder, earliest)
        # Proposers that lost and holders that were displaced may not ask that box again.
        lost = proposing & (np.take_along_axis(winner, choice, 1) != dets)
        still_open[np.nonzero(lost) + (choice[lost],)] = False
        displaced = (holder < num_dets) & (winner != holder)
        b, g = np.nonzero(displaced)
        still_open[b, holder[b, g], g] = False
        holder = winner
        free[:] = True
        b, g = np.nonzero(holder < num_dets)
        free[b, holder[b, g]] = False
    taken = np.full((batch, num_dets + 1), -1)
    taken[rows, holder] = np.arange(num_gts)
    return taken[:, :num_dets]


def match_detections(ious: np.ndarray, gt_ignore: np.ndarray,
                     thresholds: np.ndarray = IOU_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's greedy matching for one image and class.

    ious [D, G] (detections in score order), gt_ignore [G] bool. Returns (matched [T, D] bool,
    matched_ignored [T, D] bool: matched to an ignored ground truth).
    """
    limits = np.minimum(thresholds, 1 - 1e-10)
    if not ious.size:
        none = np.zeros((len(thresholds), ious.shape[0]), dtype=bool)
        return none, none.copy()
    taken = _match_batch(ious, np.repeat(gt_ignore[None], len(limits), 0), limits)
    return taken >= 0, (taken >= 0) & gt_ignore[np.maximum(taken, 0)]


def match_image_class(ious: np.ndarray, gt_boxes: np.ndarray, boxes: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image and class, matched for every area range and IoU threshold at once.

    ious [D, G] of its detections (in score order, cut to the most kept) against its ground
    truth; gt_boxes [G, 4], boxes [D, 4] xyxy pixels. Returns (matched [A, T, D], true
    positive [A, T, D]: matched to a box inside the area range, inside [A, D]: the detection
    itself inside it, ground truths inside each range [A]). A false positive is unmatched and
    inside; the rest is ignored (matched to an ignored box, or unmatched and outside).
    """
    gt_areas, det_areas = _areas(gt_boxes), _areas(boxes)
    gt_ignore = (gt_areas[None] < _AREA_LOW[:, None]) | (gt_areas[None] > _AREA_HIGH[:, None])
    inside = (det_areas[None] >= _AREA_LOW[:, None]) & (det_areas[None] <= _AREA_HIGH[:, None])
    num_areas, num_thresholds = len(AREA_RANGES), len(IOU_THRESHOLDS)
    shape = (num_areas, num_thresholds, len(boxes))
    if not ious.size:
        matched = on_ignored = np.zeros(shape, dtype=bool)
    else:
        # An area with all its ground truth on one side is matched as if none were ignored:
        # preferring regular boxes changes nothing then. Each other pattern is matched once.
        patterns = np.where(gt_ignore.all(1, keepdims=True), False, gt_ignore)
        first_of: dict[bytes, int] = {}
        which = [first_of.setdefault(p.tobytes(), len(first_of)) for p in patterns]
        unique = patterns[[which.index(u) for u in range(len(first_of))]]
        limits = np.tile(np.minimum(IOU_THRESHOLDS, 1 - 1e-10), len(unique))
        taken = _match_batch(ious, np.repeat(unique, num_thresholds, 0), limits)
        taken = taken.reshape(len(unique), num_thresholds, -1)[which]  # [A, T, D]
        matched = taken >= 0
        on_ignored = matched & np.take_along_axis(
            gt_ignore[:, None, :], np.maximum(taken, 0), 2)
    return matched, matched & ~on_ignored, inside, (~gt_ignore).sum(1)


@dataclass
class ClassMatches:
    """One class's detections over all images, matched, in COCOeval's ranking (score, stable
    over the images in id order and each image's own order).

    image [D]: index of the detection's image (in id order); rank [D]: its place in its
    image's score order (0 = highest), which the max-detections cut reads; scores [D];
    matched, tp [A, T, D] bool; inside [A, D] bool (the detection inside the area range);
    gts [I, A]: each image's ground truths inside each area range. ``positions`` [A, T, M]:
    where the matched detections of each row are (padded, ``padded`` True there), since only
    they move a precision curve's peaks (see :func:`_precision_at_recall_points`).
    """
    image: np.ndarray
    rank: np.ndarray
    scores: np.ndarray
    matched: np.ndarray
    tp: np.ndarray
    inside: np.ndarray
    gts: np.ndarray
    positions: np.ndarray = field(init=False)
    padded: np.ndarray = field(init=False)

    def __post_init__(self):
        counts = self.matched.sum(-1)
        width = int(counts.max()) if counts.size else 0
        # a stable sort puts each row's matched detections first, in ranking order
        order = np.argsort(~self.matched, axis=-1, kind="stable")[..., :width]
        self.positions = order
        self.padded = np.arange(width) >= counts[..., None]


@dataclass
class MatchTable:
    """The per-image matching of a whole evaluation, done once: what COCOeval's accumulate
    (and any resampling of the images, :func:`accumulate` with weights) reads.

    image_ids [I] sorted; classes [K] (those with ground truth), label_counts [K]."""
    image_ids: np.ndarray
    classes: np.ndarray
    label_counts: np.ndarray
    per_class: list[ClassMatches]


def match_images(images: list[ImageDetections]) -> MatchTable:
    """Match every image's detections to its ground truth, per class, area and threshold."""
    images = sorted(images, key=lambda im: im.image_id)
    classes, label_counts = np.unique(np.concatenate(
        [im.gt_classes for im in images] or [np.zeros(0)]).astype(int), return_counts=True)
    parts: list[list] = [[] for _ in classes]
    gts = np.zeros((len(classes), len(images), len(AREA_RANGES)), dtype=int)
    for i, image in enumerate(images):
        ious = (box_iou(torch.from_numpy(image.boxes), torch.from_numpy(image.gt_boxes)).numpy()
                if len(image.boxes) and len(image.gt_boxes)
                else np.zeros((len(image.boxes), len(image.gt_boxes))))
        present = set(image.gt_classes.tolist()) | set(image.classes.tolist())
        for k in (k for k, c in enumerate(classes.tolist()) if c in present):
            gt = np.flatnonzero(image.gt_classes == classes[k])
            det = np.flatnonzero(image.classes == classes[k])
            det = det[np.argsort(-image.scores[det], kind="mergesort")[:MAX_DETECTIONS[-1]]]
            *found, gts[k, i] = match_image_class(ious[np.ix_(det, gt)], image.gt_boxes[gt],
                                                  image.boxes[det])
            parts[k].append((np.full(len(det), i), np.arange(len(det)), image.scores[det],
                             *found))
    per_class = []
    num_areas, num_thresholds = len(AREA_RANGES), len(IOU_THRESHOLDS)
    for k, found in enumerate(parts):
        image, rank, scores = (np.concatenate([p[j] for p in found] or [np.zeros(0, int)])
                               for j in range(3))
        matched, tp = (np.concatenate([p[j] for p in found], 2) if found else
                       np.zeros((num_areas, num_thresholds, 0), dtype=bool) for j in (3, 4))
        inside = (np.concatenate([p[5] for p in found], 1) if found
                  else np.zeros((num_areas, 0), dtype=bool))
        order = np.argsort(-scores, kind="mergesort")
        per_class.append(ClassMatches(image[order], rank[order], scores[order],
                                      matched[:, :, order], tp[:, :, order], inside[:, order],
                                      gts[k]))
    return MatchTable(np.array([im.image_id for im in images]), classes, label_counts,
                      per_class)


def _precision_at_recall_points(matches: ClassMatches, det_weights: np.ndarray,
                                areas: np.ndarray, num_gts: np.ndarray
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Precision at the 101 recall points [A', T, R] and the final recall [A', T] of the ranked
    detections counted ``det_weights`` [D] times (whole numbers), for the area ranges
    ``areas`` [A'] with ``num_gts`` [A'] > 0 ground truths (weighted).

    COCOeval runs cumulative counts over every detection. Only the matched ones are needed:
    precision rises only at a true positive, so the envelope's value at any recall is the
    highest precision among the true positives from there on, and a true positive's false
    positives before it are the detections inside the range before it less the matched ones.
    The counts are whole numbers in floats, so the result is COCOeval's to the last bit.
    """
    thresholds, recall_points = len(IOU_THRESHOLDS), len(RECALL_POINTS)
    positions, padded = matches.positions[areas], matches.padded[areas]  # [A', T, M]
    width = positions.shape[-1]
    if not width or not len(areas):
        return (np.zeros((len(areas), thresholds, recall_points)),
                np.zeros((len(areas), thresholds)))
    inside = matches.inside[areas]
    inside_before = np.cumsum(inside * det_weights, axis=1)  # [A', D], inclusive
    weight = np.where(padded, 0.0, det_weights[positions])  # [A', T, M]
    tp_flag = np.take_along_axis(matches.tp[areas], positions, 2)
    tp = np.cumsum(weight * tp_flag, axis=-1)
    matched_inside = np.cumsum(weight * np.take_along_axis(inside[:, None, :], positions, 2),
                               axis=-1)
    fp = np.take_along_axis(inside_before[:, None, :], positions, 2) - matched_inside
    peaks = (weight > 0) & tp_flag
    precision = np.where(peaks, tp / (tp + fp + np.spacing(1)), 0.0)
    envelope = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]
    # The first true positive whose recall tp / n reaches each point, found on the integer
    # counts (to stay exact): the smallest count k with k / n >= point, as COCOeval's float
    # division compares it, then one search over all rows at once, each offset above the last.
    needed = np.stack([np.searchsorted(np.arange(n + 1) / n, RECALL_POINTS) for n in num_gts])
    offset = float(num_gts.max()) + 2
    rows = np.arange(len(areas) * thresholds).reshape(len(areas), thresholds)
    first = np.searchsorted((tp + offset * rows[..., None]).ravel(),
                            needed[:, None, :] + offset * rows[..., None])
    first -= width * rows[..., None]
    reached = first < width
    points = np.zeros(first.shape)
    points[reached] = envelope.reshape(-1, width)[
        np.broadcast_to(rows[..., None], first.shape)[reached], first[reached]]
    return points, tp[..., -1] / num_gts[:, None]


def accumulate(table: MatchTable, weights: np.ndarray | None = None,
               summary_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's accumulate: precision [T, R, K, A, M] and recall [T, K, A, M], -1 where a
    class has no ground truth in an area.

    ``weights`` [I]: how many times each image (in id order) counts, whole numbers; a resample
    of the images with replacement is its counts. An image counted w times adds its detections
    w times next to each other in the ranking, and its ground truth w times (default: once).
    ``summary_only``: only what the 12 summary numbers read (below 100 detections, only the
    recall of area "all"); the rest stays -1. A third of the work, for resampling.
    """
    weights = np.ones(len(table.image_ids)) if weights is None else np.asarray(weights, float)
    shape = (len(IOU_THRESHOLDS), len(table.classes), len(AREA_RANGES), len(MAX_DETECTIONS))
    precision = -np.ones(shape[:1] + (len(RECALL_POINTS),) + shape[1:])
    recall = -np.ones(shape)
    for k, matches in enumerate(table.per_class):
        num_gts = weights @ matches.gts  # [A]
        areas = np.flatnonzero(num_gts > 0)
        for m, max_det in enumerate(MAX_DETECTIONS):
            # Detections over the cut count 0 times: they only repeat the point before them.
            det_weights = weights[matches.image] * (matches.rank < max_det)
            if summary_only and max_det < MAX_DETECTIONS[-1]:
                if num_gts[0] > 0:  # AR1 and AR10: the true positives, counted, of area all
                    recall[:, k, 0, m] = (matches.tp[0] @ det_weights) / num_gts[0]
                continue
            points, final = _precision_at_recall_points(matches, det_weights, areas,
                                                        num_gts[areas])
            precision[:, :, k, areas, m] = points.transpose(1, 2, 0)
            recall[:, k, areas, m] = final.T
    return precision, recall


def summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """The 12 summary numbers [12] from :func:`accumulate`'s arrays."""
    return np.array([_summarize(precision, recall, *spec[1:]) for spec in SUMMARY])


def coco_evaluate(images: list[ImageDetections]) -> CocoMetrics:
    """COCOeval's bbox evaluation of ``images`` (see the module docstring for the rules)."""
    table = match_images(images)
    precision, recall = accumulate(table)
    operating = []  # per class: (tp at IoU 0.5, scores, ground truths), area all, 100 detections
    for matches in table.per_class:
        operating.append((matches.tp[0, 0], matches.scores, int(matches.gts[:, 0].sum())))
    all_100 = precision[:, :, :, 0, -1]  # [T, R, K]
    ap = np.array([_mean_valid(all_100[:, :, k]) for k in range(len(table.classes))])
    ap50 = np.array([_mean_valid(all_100[0, :, k]) for k in range(len(table.classes))])
    p_curve, r_curve, f1_curve, best = f1_curves(operating)
    return CocoMetrics(summarize(precision, recall), table.classes, table.label_counts, ap,
                       ap50, p_curve[:, best], r_curve[:, best], f1_curve[:, best],
                       float(CONFIDENCE_GRID[best]), table)


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


# The score thresholds precision, recall and F1 are read at.
CONFIDENCE_GRID = np.linspace(0, 1, 1000)


def f1_curves(ranked: list[tuple[np.ndarray, np.ndarray, int]]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Precision, recall and F1 per class against the score threshold, [K, G] on
    :data:`CONFIDENCE_GRID`, and the grid index that maximizes the mean F1 over classes.
    ``ranked``: per class (true positives [D] in score order, scores [D], ground-truth count)."""
    grid = CONFIDENCE_GRID
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
    return p_curve, r_curve, f1_curve, best
