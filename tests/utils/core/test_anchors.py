"""utils.core.anchors: yolov5's BPR, AAT and fitness, the letterboxed label sizes, k-means and the
genetic refinement, every draw from the generator passed in."""
import numpy as np
import pytest
import torch

from utils.core.anchors import (
    MIN_FIT_SIZE,
    anchor_fitness,
    anchor_stats,
    evolve_anchors,
    fit_anchors,
    fit_points,
    kmeans,
    letterboxed_wh,
    shape_metric,
    sort_by_area,
)
from utils.core.boxes import wh_ratio_match

TINY_ANCHORS = np.array([[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]], float)


def _yolov5_check(wh: np.ndarray, anchors: np.ndarray, thr: float) -> tuple[float, float]:
    """yolov5 utils/autoanchor.py check_anchors' metric(), word for word (in torch)."""
    wh, k = torch.tensor(wh), torch.tensor(anchors)
    r = wh[:, None] / k[None]
    x = torch.min(r, 1 / r).min(2)[0]
    best = x.max(1)[0]
    aat = (x > 1 / thr).float().sum(1).mean()
    bpr = (best > 1 / thr).float().mean()
    return float(bpr), float(aat)


def _sizes(seed: int = 0, n: int = 400) -> np.ndarray:
    """[n, 2] label sizes in three groups: small squares, tall boxes, large wide ones."""
    rng = np.random.default_rng(seed)
    centres = np.array([[8, 8], [20, 60], [150, 90]], float)
    group = rng.integers(0, 3, n)
    return centres[group] * rng.uniform(0.8, 1.25, (n, 2))


def test_stats_by_hand():
    wh = np.array([[10, 10], [40, 10], [100, 100]], float)
    anchors = np.array([[10, 10], [20, 20]], float)
    # [10,10]: metric 1 and 0.5 (2 match); [40,10]: 0.25 (not above 1/4) and 0.5 (1 match);
    # [100,100]: 0.1 and 0.2 (none).
    np.testing.assert_allclose(shape_metric(wh, anchors), [[1, 0.5], [0.25, 0.5], [0.1, 0.2]])
    stats = anchor_stats(wh, anchors, 4.0)
    assert stats.bpr == pytest.approx(2 / 3) and stats.aat == pytest.approx(1.0)


def test_stats_equal_yolov5s_and_the_losss_matching():
    wh = _sizes() * np.random.default_rng(1).uniform(0.3, 3, (400, 1))
    for thr in (2.0, 4.0):
        stats = anchor_stats(wh, TINY_ANCHORS, thr)
        assert (stats.bpr, stats.aat) == pytest.approx(_yolov5_check(wh, TINY_ANCHORS, thr))
        # BPR is the fraction of targets the loss assigns to some anchor.
        match = wh_ratio_match(torch.tensor(wh), torch.tensor(TINY_ANCHORS), thr)  # [A, N]
        assert stats.bpr == pytest.approx(float(match.any(0).double().mean()))
        assert stats.aat == pytest.approx(float(match.sum(0).double().mean()))


def test_fitness_counts_only_matched_labels():
    wh = np.array([[10, 10], [100, 100]], float)
    # best metric 1 (matched) and 0.1 (not): (1 + 0) / 2.
    assert anchor_fitness(wh, np.array([[10, 10]], float), 4.0) == pytest.approx(0.5)


def test_no_labels_is_no_measure():
    with pytest.raises(ValueError, match="no label sizes"):
        anchor_stats(np.zeros((0, 2)), TINY_ANCHORS, 4.0)


def test_letterboxed_sizes_follow_the_longer_side():
    # A 200 x 100 (w x h) image letterboxed to 224: scale 1.12 on both sides.
    wh = letterboxed_wh(np.array([[0.5, 0.5], [0.25, 1.0]]), np.array([[100, 200], [50, 50]]),
                        224)
    np.testing.assert_allclose(wh, [[112, 56], [56, 224]])


def test_kmeans_finds_separated_clusters_and_repeats_from_its_generator():
    points = _sizes()
    centres = sort_by_area(kmeans(points, 3, np.random.default_rng(0)))
    np.testing.assert_allclose(centres, [[8, 8], [20, 60], [150, 90]], rtol=0.08)
    again = sort_by_area(kmeans(points, 3, np.random.default_rng(0)))
    np.testing.assert_array_equal(centres, again)
    with pytest.raises(ValueError, match="2 points for 3 clusters"):
        kmeans(points[:2], 3, np.random.default_rng(0))


def test_kmeans_keeps_k_centroids_when_points_repeat():
    points = np.array([[5.0, 5.0]] * 4 + [[9.0, 9.0]])
    assert kmeans(points, 3, np.random.default_rng(0), restarts=3).shape == (3, 2)


def test_evolution_only_climbs_and_keeps_sides_of_two_pixels():
    wh = _sizes()
    start = np.array([[3, 3], [30, 30], [300, 300]], float)
    evolved = evolve_anchors(wh, start, 4.0, np.random.default_rng(0), generations=200)
    assert anchor_fitness(wh, evolved, 4.0) > anchor_fitness(wh, start, 4.0)
    assert evolved.min() >= MIN_FIT_SIZE
    np.testing.assert_array_equal(
        evolved, evolve_anchors(wh, start, 4.0, np.random.default_rng(0), generations=200))
    assert np.array_equal(evolve_anchors(wh, start, 4.0, np.random.default_rng(0), 0), start)


def test_fit_covers_the_labels_sorted_by_area_and_repeats():
    wh = _sizes()
    bad = np.array([[60, 2], [2, 60], [300, 3]], float)
    assert anchor_stats(wh, bad, 4.0).bpr < 0.1
    fitted = fit_anchors(wh, 3, 4.0, np.random.default_rng(5), generations=300)
    assert anchor_stats(wh, fitted, 4.0).bpr == 1.0
    assert list(fitted.prod(1)) == sorted(fitted.prod(1))
    np.testing.assert_array_equal(fitted,
                                  fit_anchors(wh, 3, 4.0, np.random.default_rng(5), 300))
    # A draw from the global generator changes nothing: only the one passed in is used.
    np.random.seed(123)
    np.random.random(7)
    np.testing.assert_array_equal(fitted,
                                  fit_anchors(wh, 3, 4.0, np.random.default_rng(5), 300))


def test_fit_leaves_out_labels_under_two_pixels_and_needs_one_per_anchor():
    wh = np.array([[1.0, 1.5], [1.9, 1.9], [2.0, 1.0], [40, 30]])
    np.testing.assert_array_equal(fit_points(wh), [[2.0, 1.0], [40, 30]])
    with pytest.raises(ValueError, match="2 label sizes of 2 px or more, fewer than the 3"):
        fit_anchors(wh, 3, 4.0, np.random.default_rng(0))


def test_fit_of_identical_sizes_needs_no_spread():
    wh = np.array([[16.0, 16.0]] * 5)
    fitted = fit_anchors(wh, 2, 4.0, np.random.default_rng(0), generations=50)
    assert fitted.shape == (2, 2) and np.isfinite(fitted).all()
    assert anchor_stats(wh, fitted, 4.0).bpr == 1.0


def test_the_fitness_on_logarithms_is_yolov5s_on_ratios():
    wh = _sizes() * np.random.default_rng(2).uniform(0.3, 3, (400, 1))
    for anchors in (TINY_ANCHORS, TINY_ANCHORS * 0.3, np.array([[8.0, 8.0]])):
        # yolov5's anchor_fitness: best = x.max(1); (best * (best > 1 / thr)).mean()
        x = torch.tensor(shape_metric(wh, anchors))
        best = x.max(1)[0]
        reference = float((best * (best > 1 / 4.0).double()).mean())
        assert anchor_fitness(wh, anchors, 4.0) == pytest.approx(reference, rel=1e-12)
