"""Anchors against a data set's label sizes, and anchors fitted to them, with the ultralytics
definitions (yolov5 ``utils/autoanchor.py``: ``check_anchors`` and ``kmean_anchors``).

Pure numpy. Sizes are [N, 2] arrays of label (width, height) in pixels of the letterboxed
training image, anchors [K, 2] (width, height) in the same pixels. The shape metric of a label
and an anchor is ``min(r, 1 / r)`` over width and height, ``r`` = label size / anchor size: 1
for the same size, 1/4 when a side is 4 times the anchor's or a quarter of it. An anchor
matches a label when the metric is above ``1 / anchor_t``, the loss's own rule
(:func:`utils.core.boxes.wh_ratio_match`). Every random draw comes from the generator passed in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# Labels with both sides under this many pixels are left out of a fit (yolov5's filter), and
# no fitted anchor side goes below it.
MIN_FIT_SIZE = 2.0


@dataclass(frozen=True)
class AnchorStats:
    """How well a set of anchors covers a set of label sizes."""
    bpr: float  # best possible recall: the fraction of labels that some anchor matches
    aat: float  # anchors above threshold: matching anchors per label, on average


def letterboxed_wh(wh: np.ndarray, image_hw: np.ndarray, img_size: int) -> np.ndarray:
    """Label sizes in pixels of the training image: ``wh`` [N, 2] (width, height) normalized to
    the original image, ``image_hw`` [N, 2] that image's (height, width), scaled as the image is
    letterboxed to ``img_size`` (its longer side to ``img_size``). Returns [N, 2] float64."""
    image_hw = np.asarray(image_hw, dtype=np.float64).reshape(-1, 2)
    scale = img_size / image_hw.max(1)
    return np.asarray(wh, dtype=np.float64).reshape(-1, 2) * image_hw[:, ::-1] * scale[:, None]


def shape_metric(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """[N, K]: ``min(r, 1 / r)`` over width and height of each label [N, 2] against each anchor
    [K, 2], ``r`` the label's size over the anchor's (1: the same shape)."""
    ratio = wh[:, None, :] / anchors[None, :, :]
    return np.minimum(ratio, 1 / ratio).min(2)


def anchor_stats(wh: np.ndarray, anchors: np.ndarray, anchor_t: float) -> AnchorStats:
    """BPR and AAT of ``anchors`` [K, 2] on label sizes ``wh`` [N, 2] (N >= 1): yolov5's
    ``bpr = mean(best > 1 / thr)`` and ``aat = mean(count(metric > 1 / thr))``, thr = anchor_t."""
    if not len(wh):
        raise ValueError("no label sizes to measure the anchors on")
    above = shape_metric(wh, anchors) > 1 / anchor_t
    return AnchorStats(bpr=float(above.any(1).mean()), aat=float(above.sum(1).mean()))


def anchor_fitness(wh: np.ndarray, anchors: np.ndarray, anchor_t: float) -> float:
    """What the genetic refinement maximizes (yolov5's ``anchor_fitness``): the mean over labels
    [N, 2] of the best anchor's metric, counted only where it matches (above 1 / anchor_t)."""
    return fitness_function(wh, anchor_t)(anchors)


def fitness_function(wh: np.ndarray, anchor_t: float) -> Callable[[np.ndarray], float]:
    """:func:`anchor_fitness` of anchors [K, 2] on the fixed labels ``wh`` [N, 2], computed on
    logarithms: the metric is exp(-d), d = max over sides of |log(label / anchor)|, so the best
    anchor is the one of least d; a tenth of the time of the ratios (1000 generations of a fit
    evaluate it 1000 times), equal to them but for the last bits of rounding."""
    log_w, log_h = np.log(wh[:, :1]), np.log(wh[:, 1:])  # [N, 1] each
    limit = np.log(anchor_t)

    def fitness(anchors: np.ndarray) -> float:
        log_anchors = np.log(anchors)  # [K, 2]
        distance = np.maximum(np.abs(log_w - log_anchors[:, 0]),
                              np.abs(log_h - log_anchors[:, 1]))  # [N, K]
        nearest = distance.min(1)
        return float(np.where(nearest < limit, np.exp(-nearest), 0.0).mean())

    return fitness


def fit_points(wh: np.ndarray) -> np.ndarray:
    """The label sizes [M, 2] a fit uses: those with a side of MIN_FIT_SIZE pixels or more
    (smaller ones are too few pixels for a shape; yolov5 leaves them out too)."""
    return wh[(wh >= MIN_FIT_SIZE).any(1)]


def sort_by_area(anchors: np.ndarray) -> np.ndarray:
    """[K, 2] from the smallest area to the largest (ties keep their order)."""
    return anchors[np.argsort(anchors.prod(1), kind="stable")]


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, restarts: int = 30,
           max_iterations: int = 300, tolerance: float = 1e-5) -> np.ndarray:
    """k centroids [k, D] of ``points`` [N, D] (N >= k): Lloyd's algorithm from ``restarts``
    starts of k distinct points drawn from ``rng``, the one of least mean distance kept (as
    ``scipy.cluster.vq.kmeans(points, k, iter=restarts)``, which yolov5 calls; a cluster that
    empties keeps its centroid, so there are always k)."""
    if len(points) < k:
        raise ValueError(f"{len(points)} points for {k} clusters")
    best, best_distortion = points[:k], np.inf
    for _ in range(restarts):
        start = points[rng.choice(len(points), k, replace=False)]
        centroids, distortion = _lloyd(points, start, max_iterations, tolerance)
        if distortion < best_distortion:
            best, best_distortion = centroids, distortion
    return best


def _lloyd(points: np.ndarray, centroids: np.ndarray, max_iterations: int, tolerance: float
           ) -> tuple[np.ndarray, float]:
    """Assign and re-centre until the mean distance improves by ``tolerance`` or less; returns
    the centroids [k, D] and their mean distance."""
    previous, k = np.inf, len(centroids)
    for _ in range(max_iterations):
        squared = sum((points[:, d:d + 1] - centroids[:, d]) ** 2
                      for d in range(points.shape[1]))  # [N, k]
        nearest = squared.argmin(1)
        distortion = float(np.sqrt(squared.min(1)).mean())
        if previous - distortion <= tolerance:
            break
        previous = distortion
        counts = np.bincount(nearest, minlength=k)[:, None]  # [k, 1]
        sums = np.stack([np.bincount(nearest, weights=points[:, d], minlength=k)
                         for d in range(points.shape[1])], 1)  # [k, D]
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
    return centroids, distortion


def evolve_anchors(wh: np.ndarray, anchors: np.ndarray, anchor_t: float,
                   rng: np.random.Generator, generations: int = 1000,
                   mutation_prob: float = 0.9, sigma: float = 0.1) -> np.ndarray:
    """yolov5's genetic refinement of ``anchors`` [K, 2] on label sizes ``wh`` [N, 2]: each
    generation multiplies each value, with probability ``mutation_prob``, by
    ``1 + u * n * sigma`` (u uniform, one per generation; n normal, one per value; clipped to
    0.3..3, sides at least MIN_FIT_SIZE) and keeps the mutant when :func:`anchor_fitness` rises.
    Returns [K, 2]."""
    fitness_of = fitness_function(wh, anchor_t)
    best = anchors.astype(np.float64)
    best_fitness = fitness_of(best)
    for _ in range(generations):
        change = np.ones_like(best)
        while (change == 1).all():  # a mutation that changes nothing would only repeat a test
            change = ((rng.random(best.shape) < mutation_prob) * rng.random()
                      * rng.standard_normal(best.shape) * sigma + 1).clip(0.3, 3.0)
        candidate = (best * change).clip(min=MIN_FIT_SIZE)
        fitness = fitness_of(candidate)
        if fitness > best_fitness:
            best, best_fitness = candidate, fitness
    return best


def fit_anchors(wh: np.ndarray, n: int, anchor_t: float, rng: np.random.Generator,
                generations: int = 1000) -> np.ndarray:
    """``n`` anchors [n, 2] fitted to label sizes ``wh`` [N, 2], smallest area first: k-means on
    the sizes (whitened: each axis divided by its standard deviation), then
    :func:`evolve_anchors`. Needs at least ``n`` sizes in :func:`fit_points`."""
    points = fit_points(wh)
    if len(points) < n:
        raise ValueError(f"{len(points)} label sizes of {MIN_FIT_SIZE:g} px or more, fewer "
                         f"than the {n} anchors to fit")
    spread = points.std(0)
    spread[spread == 0] = 1.0  # every label the same width (or height): nothing to whiten
    start = kmeans(points / spread, n, rng) * spread
    return sort_by_area(evolve_anchors(points, start, anchor_t, rng, generations))
