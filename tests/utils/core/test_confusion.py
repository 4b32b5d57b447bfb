"""The confusion matrix on literal boxes: matched pairs by class, missed ground truth as
predicted background, unmatched detections as true background, the thresholds strict."""
import numpy as np
import pytest

from utils.core.confusion import confusion_matrix, match_pairs, normalize_by_true


def _det(*rows):
    return np.array(rows, dtype=float).reshape(-1, 6)


def _lab(*rows):
    return np.array(rows, dtype=float).reshape(-1, 5)


def test_pairs_confusions_misses_and_false_detections_land_in_their_cells():
    labels = [_lab([0, 0, 0, 10, 10], [1, 20, 20, 30, 30]), _lab([1, 50, 50, 60, 60])]
    detections = [
        _det([0, 0, 10, 10, 0.9, 0],      # class 0 found as 0
             [20, 20, 30, 30, 0.8, 0],    # class 1 found as 0
             [70, 70, 80, 80, 0.7, 1],    # nothing there: true background, predicted 1
             [0, 0, 10, 10, 0.1, 1]),     # below the score threshold: not counted
        _det()]                           # image 2: its class-1 box missed
    matrix = confusion_matrix(detections, labels, num_classes=2)
    np.testing.assert_array_equal(matrix, [[1, 0, 0],   # true 0: predicted 0
                                           [1, 0, 1],   # true 1: predicted 0, and missed
                                           [0, 1, 0]])  # true background: predicted 1
    assert matrix.sum() == 4  # 3 ground truths + 1 false detection; the low score dropped


def test_each_box_is_matched_once_the_highest_iou_first():
    # Two detections on one ground truth: the closer one is the match, the other a false one.
    labels = [_lab([0, 0, 0, 10, 10])]
    detections = [_det([1, 0, 11, 10, 0.6, 1], [0, 0, 10, 10, 0.5, 0])]
    np.testing.assert_array_equal(confusion_matrix(detections, labels, 2),
                                  [[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    # One detection over two ground truths: it takes the closer, the other is missed.
    labels = [_lab([0, 0, 0, 10, 10], [1, 0, 0, 10, 12])]
    detections = [_det([0, 0, 10, 12, 0.9, 1])]
    np.testing.assert_array_equal(confusion_matrix(detections, labels, 2),
                                  [[0, 0, 1], [0, 1, 0], [0, 0, 0]])


def test_the_thresholds_are_strict_as_ultralytics_has_them():
    labels = [_lab([0, 0, 0, 10, 10])]
    half = _det([5, 0, 15, 10, 0.9, 0])  # IoU 50 / 150 = 1/3 with the label
    assert confusion_matrix([half], labels, 1, iou=1 / 3)[0, 0] == 0
    assert confusion_matrix([half], labels, 1, iou=0.33)[0, 0] == 1
    at_threshold = _det([0, 0, 10, 10, 0.25, 0])
    np.testing.assert_array_equal(confusion_matrix([at_threshold], labels, 1, conf=0.25),
                                  [[0, 1], [0, 0]])


def test_images_without_boxes_or_labels_and_bad_classes():
    assert confusion_matrix([_det()], [_lab()], 3).sum() == 0
    np.testing.assert_array_equal(confusion_matrix([_det([0, 0, 5, 5, 0.9, 2])], [_lab()], 3),
                                  [[0] * 4, [0] * 4, [0] * 4, [0, 0, 1, 0]])
    with pytest.raises(ValueError, match="class 3 with 3 classes"):
        confusion_matrix([_det([0, 0, 5, 5, 0.9, 3])], [_lab()], 3)
    with pytest.raises(ValueError, match="2 images of detections, 1 of labels"):
        confusion_matrix([_det(), _det()], [_lab()], 3)


def test_greedy_pairs_and_the_normalization_by_true_class():
    ious = np.array([[0.9, 0.8], [0.85, 0.2]])
    gt, det = match_pairs(ious, 0.5)
    assert sorted(zip(gt.tolist(), det.tolist())) == [(0, 0)]  # 0.9 first; 0.85 and 0.8 lose
    gt, det = match_pairs(np.zeros((0, 3)), 0.5)
    assert gt.shape == det.shape == (0,)
    shares = normalize_by_true(np.array([[3, 1, 0], [0, 0, 0], [2, 2, 0]]))
    np.testing.assert_allclose(shares[0], [0.75, 0.25, 0])
    assert np.isnan(shares[1]).all()  # a class with nothing counted
    np.testing.assert_allclose(shares[2], [0.5, 0.5, 0])
