"""The curves behind an evaluation's numbers, for its plots.

- Precision against recall by COCO's rules (:func:`pr_curves`): each class's curve at IoU 0.5 is
  the envelope COCOeval samples at its 101 recall points (area all, 100 detections), so the
  mean of a class's curve is its AP50 and the mean of the mean curve is mAP@0.5; the mean over
  the ten IoU thresholds gives the mAP@0.5:0.95 curve. :func:`pr_band` resamples the images
  (the image bootstrap's weights) for a band around the mean curves.
- Precision, recall and F1 against the score threshold (:func:`confidence_curves`): the curves
  :func:`utils.core.metrics.f1_curves` computes and the evaluation picks its point on, the
  same arithmetic, so the marked point is the P, R and F1 of results.txt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.core.metrics import CONFIDENCE_GRID, RECALL_POINTS, MatchTable, accumulate, f1_curves


def _nanmean(values: np.ndarray, axis) -> np.ndarray:
    """Mean over ``axis`` leaving NaN out; NaN (no warning) where all are NaN."""
    count = np.sum(~np.isnan(values), axis=axis)
    total = np.nansum(values, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass
class PRCurves:
    """recall [R] (COCO's 101 points); per_class [K, R]: precision at IoU 0.5 of the table's
    classes (NaN where a class has no ground truth among the counted images); mean50 [R] and
    mean50_95 [R]: over the classes, and over the classes and IoU 0.50:0.95."""
    recall: np.ndarray
    per_class: np.ndarray
    mean50: np.ndarray
    mean50_95: np.ndarray


def pr_curves(table: MatchTable, weights: np.ndarray | None = None) -> PRCurves:
    """COCO's precision-recall curves of the images counted ``weights`` [I] times (default
    once each; see :func:`utils.core.metrics.accumulate`)."""
    precision, _ = accumulate(table, weights, summary_only=True)  # [T, R, K, A, M]
    curves = precision[:, :, :, 0, -1]  # area all, 100 detections: [T, R, K]
    curves = np.where(curves == -1, np.nan, curves)
    return PRCurves(RECALL_POINTS.copy(), curves[0].T, _nanmean(curves[0], 1),
                    _nanmean(curves.transpose(1, 0, 2).reshape(len(RECALL_POINTS), -1), 1))


@dataclass
class PRBand:
    """The central ``level`` of the mean curves over image resamples, pointwise: low50, high50
    [R] around mean50, low50_95, high50_95 [R] around mean50_95 (NaN where no resample had
    ground truth); ``resamples`` drawn."""
    low50: np.ndarray
    high50: np.ndarray
    low50_95: np.ndarray
    high50_95: np.ndarray
    resamples: int
    level: float


def pr_band(table: MatchTable, counts: np.ndarray, level: float = 0.95) -> PRBand:
    """The pointwise percentile band of the mean precision-recall curves over the resamples
    ``counts`` [N, I] (how many times each image is drawn in each: the image bootstrap's
    :func:`utils.core.bootstrap.resample_counts`)."""
    mean50, mean50_95 = [], []
    for weights in counts:
        curves = pr_curves(table, weights)
        mean50.append(curves.mean50)
        mean50_95.append(curves.mean50_95)
    tails = [(1 - level) / 2, (1 + level) / 2]
    bands = []
    for samples in (np.array(mean50), np.array(mean50_95)):
        valid = ~np.isnan(samples).all(0)
        band = np.full((2, samples.shape[1]), np.nan)
        if len(samples):
            band[:, valid] = np.nanquantile(samples[:, valid], tails, axis=0)
        bands.append(band)
    return PRBand(bands[0][0], bands[0][1], bands[1][0], bands[1][1], len(counts), level)


def ranked_detections(table: MatchTable) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Per class of the table: (true positive [D] at IoU 0.5, area all, scores [D] in ranking
    order, ground-truth count): what :func:`utils.core.metrics.f1_curves` reads."""
    return [(m.tp[0, 0], m.scores, int(m.gts[:, 0].sum())) for m in table.per_class]


@dataclass
class ConfidenceCurves:
    """confidence [G] (the score threshold); precision, recall, f1 [K, G] per class; ``best``:
    the grid index where the mean F1 over the classes is highest (the evaluation's point)."""
    confidence: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    best: int

    def at_best(self) -> tuple[float, float, float, float]:
        """(threshold, mean P, mean R, mean F1) at ``best``: results.txt's P, R and F1."""
        b = self.best
        return (float(self.confidence[b]), float(self.precision[:, b].mean()),
                float(self.recall[:, b].mean()), float(self.f1[:, b].mean()))


def confidence_curves(ranked: list[tuple[np.ndarray, np.ndarray, int]]) -> ConfidenceCurves:
    """Precision, recall and F1 [K, G] against the score threshold, from per class (true
    positives [D] in score order, scores [D], ground-truth count): the evaluation's own
    curves, so ``at_best`` gives its P, R and F1 to the last bit."""
    p_curve, r_curve, f1_curve, best = f1_curves(ranked)
    return ConfidenceCurves(CONFIDENCE_GRID.copy(), p_curve, r_curve, f1_curve, best)
