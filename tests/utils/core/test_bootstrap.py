"""The image bootstrap: coverage on cases whose answer is known, the same interval for the same
seed, and the paired form on two models over the same images."""
import numpy as np
import pytest
from scipy import stats

from utils.core.bootstrap import (
    COCO_NAMES,
    bootstrap,
    coco_bootstrap,
    paired_coco_bootstrap,
    percentile_interval,
    resample_counts,
)
from utils.core.metrics import ImageDetections, match_images


def test_counts_draw_each_resample_as_many_items_as_there_are():
    counts = resample_counts(7, 50, seed=3)
    assert counts.shape == (50, 7) and (counts.sum(1) == 7).all() and counts.min() >= 0
    np.testing.assert_array_equal(counts, resample_counts(7, 50, seed=3))
    assert not np.array_equal(counts, resample_counts(7, 50, seed=4))
    assert not np.array_equal(counts, resample_counts(7, 50, seed=3, purpose="other"))


def test_the_interval_of_a_mean_covers_the_true_mean_95_times_in_100():
    """400 seeded trials: 100 values (as many as the built-in validation images) from a normal
    of mean 1 each, the 95% interval of their mean from 400 resamples. The percentile
    bootstrap runs a little short of 95% (about 93-94% here: its interval is too narrow by
    about sqrt((n-1)/n), and 400 resamples place its ends roughly; these trials give 92.25%);
    400 trials spread by 1.2%, so the bounds are 3 of those from 94%."""
    rng = np.random.default_rng(0)
    trials, covered = 400, 0
    for trial in range(trials):
        values = rng.normal(1.0, 2.0, 100)
        [interval] = bootstrap(lambda w, v=values: [np.dot(w, v) / w.sum()], len(values), 400,
                               seed=trial)
        covered += interval.low <= 1.0 <= interval.high
    assert 0.90 <= covered / trials <= 0.98


def test_the_bias_correction_moves_the_interval_against_the_resamples_shift():
    """Resamples centred half a standard deviation above the value: the bias-corrected
    interval is the plain one reflected about the value, -0.5 -/+ 1.96 (Efron's z0 = -0.5)."""
    grid = (np.arange(200_000) + 0.5) / 200_000
    samples = (0.5 + stats.norm.ppf(grid))[:, None]  # a normal of mean 0.5, sd 1, its quantiles
    low, high = percentile_interval(samples, 0.95)
    assert low[0] == pytest.approx(0.5 - 1.96, abs=0.02)
    assert high[0] == pytest.approx(0.5 + 1.96, abs=0.02)
    low, high = percentile_interval(samples, 0.95, values=np.zeros(1))
    assert low[0] == pytest.approx(-0.5 - 1.96, abs=0.01)
    assert high[0] == pytest.approx(-0.5 + 1.96, abs=0.01)


def test_percentiles_leave_undefined_resamples_out():
    samples = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])
    low, high = percentile_interval(samples, level=0.5)
    assert low[0] == pytest.approx(1.5) and high[0] == pytest.approx(2.5)
    assert np.isnan(low[1]) and np.isnan(high[1])


def _images(seed, count=30, shift=0.0):
    """One class; each image holds 1 to 3 objects, each found by a detection whose box is off
    by a random amount (plus ``shift`` px), and a false detection or none."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        objects = rng.integers(1, 4)
        xy = rng.uniform(0, 300, (objects, 2))
        size = rng.uniform(10, 150, (objects, 2))
        gt = np.concatenate([xy, xy + size], 1)
        boxes = gt + rng.normal(0, 1, (objects, 4)) * size.mean(1, keepdims=True) * 0.1 + shift
        scores = rng.uniform(0.3, 1.0, objects)
        if rng.random() < 0.5:
            boxes = np.concatenate([boxes, [[0, 0, 20, 20]]])
            scores = np.append(scores, rng.uniform(0, 0.9))
        images.append(ImageDetections(i + 1, gt, np.zeros(objects, int), boxes, scores,
                                      np.zeros(len(boxes), int)))
    return images


def test_coco_intervals_repeat_to_the_bit_for_one_seed_and_hold_the_value():
    table = match_images(_images(0))
    first, again = coco_bootstrap(table, 200, seed=5), coco_bootstrap(table, 200, seed=5)
    assert list(first) == list(COCO_NAMES) and first == again
    assert coco_bootstrap(table, 200, seed=6) != first
    for name in ("AP", "AP50", "AR100"):
        v = first[name]
        assert v.low < v.value < v.high and v.high - v.low < 0.5 and v.undefined == 0


def test_a_model_against_itself_differs_by_exactly_nothing():
    table = match_images(_images(1))
    for v in paired_coco_bootstrap(table, table, 100, seed=0).values():
        assert (v.value, v.low, v.high) == (0, 0, 0) or np.isnan(v.value)


def test_paired_intervals_are_tighter_than_two_loose_ones():
    """Two models on the same images: B's boxes a pixel further off. The images' difficulty is
    shared, so the paired interval of B - A is much narrower than A's and B's own intervals
    laid side by side."""
    a, b = match_images(_images(2, 60)), match_images(_images(2, 60, shift=1.0))
    paired = paired_coco_bootstrap(a, b, 300, seed=0)["AP"]
    alone_a, alone_b = coco_bootstrap(a, 300, seed=0)["AP"], coco_bootstrap(b, 300, seed=0)["AP"]
    loose = np.hypot(alone_a.high - alone_a.low, alone_b.high - alone_b.low)
    assert paired.value < 0 and paired.high - paired.low < loose / 2


def test_other_images_are_refused():
    with pytest.raises(ValueError, match="same images"):
        paired_coco_bootstrap(match_images(_images(0, 5)), match_images(_images(0, 6)), 10, 0)
