import torch

from utils.core.boxes import box_iou, paired_iou, wh_ratio_match, xywh_to_xyxy, xyxy_to_xywh


def test_conversions_round_trip():
    xywh = torch.tensor([[10.0, 20.0, 4.0, 6.0], [0.5, 0.5, 1.0, 1.0]])
    xyxy = xywh_to_xyxy(xywh)
    torch.testing.assert_close(xyxy, torch.tensor([[8.0, 17.0, 12.0, 23.0], [0.0, 0.0, 1.0, 1.0]]))
    torch.testing.assert_close(xyxy_to_xywh(xyxy), xywh)


def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))


def test_giou_by_hand():
    pred = torch.tensor([[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]])     # xywh
    target = torch.tensor([[1.0, 1.0, 2.0, 2.0], [4.0, 1.0, 2.0, 2.0]])
    # Second pair: disjoint, hull 5x2=10, union 8 -> GIoU = 0 - (10 - 8) / 10.
    torch.testing.assert_close(paired_iou(pred, target, "giou"), torch.tensor([1.0, -0.2]))
    assert paired_iou(pred, target, "ciou")[0].item() == 1.0


def test_wh_ratio_match():
    targets = torch.tensor([[10.0, 10.0], [50.0, 10.0], [30.0, 20.0]])
    anchors = torch.tensor([[10.0, 12.0], [40.0, 40.0]])
    match = wh_ratio_match(targets, anchors, threshold=4.0)
    # 40/10 = 4 exactly is not within the factor: the bound is strict.
    assert match.tolist() == [[True, False, True], [False, False, True]]
