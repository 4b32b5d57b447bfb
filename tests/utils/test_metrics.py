import numpy as np
import pytest
import torch

from utils.metrics import ap_per_class, compute_ap, match_predictions


def test_compute_ap_by_hand():
    # Perfect ranking: precision 1 up to recall 1.
    assert compute_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    # Envelope 1 for recall <= 0.5 (51 of the 101 points), 2/3 above (50 points).
    assert compute_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == \
        pytest.approx((51 + 50 * 2 / 3) / 101)
    # Recall never above 0.5: the upper half of the points count 0.
    assert compute_ap(np.array([0.5]), np.array([1.0])) == pytest.approx(51 / 101)


def test_match_predictions_one_label_once():
    labels = torch.tensor([[0, 0.0, 0.0, 10.0, 10.0]])
    detections = torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.9, 0],     # exact
                               [0.0, 0.0, 10.0, 9.0, 0.8, 0],      # IoU 0.9, duplicate
                               [0.0, 0.0, 10.0, 10.0, 0.7, 1]])    # wrong class
    correct = match_predictions(detections, labels)
    assert correct[0].all()
    assert not correct[1].any()
    assert not correct[2].any()


def test_match_predictions_iou_thresholds():
    labels = torch.tensor([[0, 0.0, 0.0, 10.0, 10.0]])
    detections = torch.tensor([[0.0, 0.0, 10.0, 7.0, 0.9, 0]])  # IoU 0.7
    assert match_predictions(detections, labels)[0].tolist() == [True] * 5 + [False] * 5


def test_ap_per_class_small_case():
    # Class 0: two labels, detections ranked TP, FP, TP -> AP = 1*0.5 + (2/3)*0.5 = 0.833.
    tp = np.array([[True], [False], [True], [True]])
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    pred_cls = np.array([0, 0, 0, 1])
    target_cls = np.array([0, 0, 1])
    m = ap_per_class(tp, conf, pred_cls, target_cls)
    assert m.classes.tolist() == [0, 1]
    assert m.ap[0, 0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=0.01)
    assert m.ap[1, 0] == pytest.approx(1.0, abs=0.01)
    assert m.label_counts.tolist() == [2, 1]
