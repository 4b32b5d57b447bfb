"""The image bootstrap: how much of a COCO number is the validation set's own sampling noise.

The images are the sampled units (one image's boxes are not independent of each other), so a
resample draws as many images as were evaluated, with replacement, and the 12 numbers are
computed again on it; the 2.5% and 97.5% points of those resampled numbers make the 95% interval
(the percentile bootstrap, Efron and Tibshirani 1993, ch. 13), bias-corrected (ch. 14), since
an AP of fewer distinct images comes out high. A resample only re-weights the per-image
matching done once (:class:`utils.core.metrics.MatchTable`): no box is matched again.

Two models evaluated on the same images share every resample (the paired bootstrap): what the
images make easy or hard for both cancels in their difference, which a comparison of two loose
intervals would count twice.

The resamples are drawn here rather than by ``scipy.stats.bootstrap`` so that the draw is this
project's own, from :func:`utils.base.repro.resample_rng`: one seed gives the same interval to the
last bit, on any machine and under any scipy version.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from utils.base.repro import resample_rng
from utils.core.metrics import SUMMARY, MatchTable, accumulate, summarize

COCO_NAMES = tuple(name for name, *_ in SUMMARY)


@dataclass(frozen=True)
class Interval:
    """A number, its bootstrap interval, and the resamples in which it was undefined (COCO's
    -1: no ground truth in that area range among the drawn images), left out of the interval.
    """
    value: float
    low: float
    high: float
    undefined: int


def resample_counts(num_items: int, resamples: int, seed: int, purpose: str = "images"
                    ) -> np.ndarray:
    """[N, I]: how many times each of ``num_items`` items is drawn in each of ``resamples``
    resamples of ``num_items`` draws with replacement."""
    draws = resample_rng(seed, purpose).integers(0, num_items, size=(resamples, num_items))
    rows = np.arange(resamples)[:, None] * num_items
    return np.bincount((rows + draws).ravel(), minlength=resamples * num_items).reshape(
        resamples, num_items)


def percentile_interval(samples: np.ndarray, level: float = 0.95,
                        values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Low and high [S] of the central ``level`` of ``samples`` [N, S], NaN (undefined) values
    left out; NaN where a column has none.

    With ``values`` [S] (the numbers on the whole sample), the bias-corrected percentile
    interval (Efron 1982): the percentiles move by how far the resamples' median lies from the
    value. An AP needs it: the envelope of a precision curve is a maximum, so AP on fewer
    distinct images comes out high, on 100 images as on their resamples. On synthetic images
    whose population AP was known the plain percentile interval held it in 83% of 150 trials,
    the corrected one in 93% (docs/measurements/noise.md).
    """
    tails = np.array([(1 - level) / 2, (1 + level) / 2])
    low, high = np.full(samples.shape[1], np.nan), np.full(samples.shape[1], np.nan)
    for s, column in enumerate(samples.T):
        column = column[~np.isnan(column)]
        if not len(column) or (values is not None and np.isnan(values[s])):
            continue
        levels = tails
        if values is not None:
            # ties count half, so resamples that all equal the value leave it in the middle
            below = (np.sum(column < values[s]) + 0.5 * np.sum(column == values[s])) / len(column)
            below = np.clip(below, 0.5 / len(column), 1 - 0.5 / len(column))
            levels = stats.norm.cdf(2 * stats.norm.ppf(below) + stats.norm.ppf(tails))
        low[s], high[s] = np.quantile(column, levels)
    return low, high


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], num_items: int, resamples: int,
              seed: int, level: float = 0.95, purpose: str = "images") -> list[Interval]:
    """Bias-corrected percentile intervals of ``statistic`` (weights [I] -> values [S], NaN
    where undefined), its value at weights of one each, over seeded resamples of the
    ``num_items`` items."""
    value = np.asarray(statistic(np.ones(num_items)), dtype=float)
    counts = resample_counts(num_items, resamples, seed, purpose)
    samples = np.stack([np.asarray(statistic(c), dtype=float) for c in counts])
    low, high = percentile_interval(samples, level, value)
    undefined = np.isnan(samples).sum(0)
    return [Interval(float(v), float(lo), float(hi), int(u))
            for v, lo, hi, u in zip(value, low, high, undefined)]


def coco_numbers(table: MatchTable, weights: np.ndarray) -> np.ndarray:
    """The 12 COCO numbers [12] of the images counted by ``weights`` [I]; NaN for COCO's -1."""
    numbers = summarize(*accumulate(table, weights, summary_only=True))
    return np.where(numbers == -1, np.nan, numbers)


def coco_bootstrap(table: MatchTable, resamples: int, seed: int, level: float = 0.95
                   ) -> dict[str, Interval]:
    """Each of the 12 COCO numbers with its image-bootstrap interval."""
    intervals = bootstrap(lambda w: coco_numbers(table, w), len(table.image_ids), resamples,
                          seed, level)
    return dict(zip(COCO_NAMES, intervals))


def paired_coco_bootstrap(table_a: MatchTable, table_b: MatchTable, resamples: int, seed: int,
                          level: float = 0.95) -> dict[str, Interval]:
    """B - A of each COCO number, both models on the same images, with the interval of the
    paired bootstrap (one resample of the images for both)."""
    if not np.array_equal(table_a.image_ids, table_b.image_ids):
        raise ValueError("the two evaluations were not made on the same images")
    intervals = bootstrap(lambda w: coco_numbers(table_b, w) - coco_numbers(table_a, w),
                          len(table_a.image_ids), resamples, seed, level)
    return dict(zip(COCO_NAMES, intervals))
