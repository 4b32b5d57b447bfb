"""The plots' curves give back the evaluation's own numbers: the PR curves' means are COCO's AP50
and AP, the F1 curve's best point is the evaluation's P, R and F1 to the last bit, at the
evaluation's own best-F1 threshold."""
import numpy as np
import pytest

from utils.core.bootstrap import resample_counts
from utils.core.curves import (
    confidence_curves,
    pr_band,
    pr_curves,
    ranked_detections,
)
from utils.core.metrics import ImageDetections, coco_evaluate


def synthetic_images(num_classes: int, images: int = 30, seed: int = 0
                     ) -> list[ImageDetections]:
    """Ground truth found with jittered boxes, some classes swapped, some missed, and a few
    false detections; xyxy pixels."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(images):
        count = int(rng.integers(1, 5))
        corner = rng.uniform(0, 300, (count, 2))
        gt = np.column_stack((corner, corner + rng.uniform(10, 120, (count, 2))))
        classes = rng.integers(0, num_classes, count)
        found = rng.random(count) < 0.8
        boxes = np.vstack((gt[found] + rng.normal(0, 5, (found.sum(), 4)),
                           np.column_stack((corner[:1], corner[:1] + 30))))
        det_classes = np.append(np.where(rng.random(found.sum()) < 0.15,
                                         rng.integers(0, num_classes, found.sum()),
                                         classes[found]), rng.integers(0, num_classes))
        scores = rng.uniform(0.01, 1.0, len(boxes))
        records.append(ImageDetections(i, gt, classes, boxes, scores, det_classes))
    return records


@pytest.mark.parametrize("num_classes", [1, 3])
def test_the_pr_curves_means_are_cocos_ap50_and_ap(num_classes):
    metrics = coco_evaluate(synthetic_images(num_classes))
    curves = pr_curves(metrics.table)
    assert curves.per_class.shape == (len(metrics.classes), 101) == (num_classes, 101)
    np.testing.assert_allclose(curves.per_class.mean(1), metrics.ap50, rtol=0, atol=1e-12)
    assert curves.mean50.mean() == pytest.approx(metrics.named()["AP50"], abs=1e-12)
    assert curves.mean50_95.mean() == pytest.approx(metrics.named()["AP"], abs=1e-12)


def test_the_marked_confidence_is_the_evaluations_best_f1_point():
    metrics = coco_evaluate(synthetic_images(3))
    ranked = ranked_detections(metrics.table)
    curves = confidence_curves(ranked)
    p, r, f1 = metrics.precision, metrics.recall, metrics.f1  # results.txt's, per class
    conf, mean_p, mean_r, mean_f1 = curves.at_best()
    assert (mean_p, mean_r, mean_f1) == (float(p.mean()), float(r.mean()), float(f1.mean()))
    assert curves.f1.mean(0).max() == mean_f1 and 0 <= conf <= 1
    np.testing.assert_array_equal(curves.precision[:, curves.best], p)
    assert metrics.f1_conf == conf  # the threshold a checkpoint keeps for detect.py


def test_the_band_is_the_curve_itself_when_every_resample_is_the_whole_set():
    table = coco_evaluate(synthetic_images(3)).table
    images = len(table.image_ids)
    band = pr_band(table, np.ones((4, images)))
    curves = pr_curves(table)
    np.testing.assert_array_equal(band.low50, curves.mean50)
    np.testing.assert_array_equal(band.high50_95, curves.mean50_95)
    band = pr_band(table, resample_counts(images, 30, seed=0))
    assert band.resamples == 30 and (band.low50 <= band.high50).all()
    assert (band.low50 < band.high50).any()
