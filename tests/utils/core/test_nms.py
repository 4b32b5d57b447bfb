import torch

from utils.core.nms import non_max_suppression


def _raw(rows):
    """Rows (x, y, w, h, obj, class scores...) -> a [1, N, 5 + C] prediction."""
    return torch.tensor(rows, dtype=torch.float32)[None]


def test_overlapping_boxes_of_one_class_keep_the_best():
    pred = _raw([[50, 50, 20, 20, 0.9, 0.9, 0.1],
                 [51, 50, 20, 20, 0.8, 0.9, 0.1],    # IoU 0.9 with the first: suppressed
                 [150, 150, 20, 20, 0.7, 0.9, 0.1]])
    det = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5, multi_label=False)[0]
    torch.testing.assert_close(det[:, :4], torch.tensor([[40.0, 40, 60, 60], [140, 140, 160, 160]]))
    torch.testing.assert_close(det[:, 4], torch.tensor([0.81, 0.63]))
    assert det[:, 5].tolist() == [0, 0]


def test_other_classes_are_not_suppressed_by_each_other():
    pred = _raw([[50, 50, 20, 20, 0.9, 0.9, 0.1], [51, 50, 20, 20, 0.8, 0.1, 0.9]])
    det = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5, multi_label=False)[0]
    assert det[:, 5].tolist() == [0, 1]
    agnostic = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5, multi_label=False,
                                   agnostic=True)[0]
    assert agnostic[:, 5].tolist() == [0]


def test_multi_label_keeps_a_box_per_class_above_the_threshold():
    pred = _raw([[50, 50, 20, 20, 1.0, 0.6, 0.5, 0.01]])
    det = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5, multi_label=True)[0]
    assert sorted(det[:, 5].tolist()) == [0, 1]
    assert non_max_suppression(pred, conf_thres=0.1, classes=[1])[0][:, 5].tolist() == [1]


def test_one_class_scores_are_the_objectness():
    """With one class the class output is untrained: it must not scale the score."""
    pred = _raw([[50, 50, 20, 20, 0.9, 0.02]])
    det = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5)[0]
    assert det[:, 4].tolist() == [0.8999999761581421] and det[:, 5].tolist() == [0]


def test_nothing_above_the_threshold_and_max_det():
    assert non_max_suppression(_raw([[5, 5, 2, 2, 0.01, 0.5, 0.5]]), conf_thres=0.1)[0].shape \
        == (0, 6)
    many = _raw([[10 + 30 * i, 10, 10, 10, 0.9, 0.9, 0.1] for i in range(12)])
    assert len(non_max_suppression(many, conf_thres=0.1, max_det=5)[0]) == 5
