import pytest
import torch
from torchvision.ops import batched_nms

from utils.core.nms import (
    _batched_nms_coordinate_trick,
    _batched_nms_vanilla,
    non_max_suppression,
    tie_free_batched_nms,
)


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


def _tied_boxes(n: int, seed: int = 0):
    """``n`` random boxes (xyxy) in 3 classes whose scores take 4 values only: most tie."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 400
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 60 + 5], 1)
    scores = (torch.randint(0, 4, (n,), generator=g).float() + 1) / 8
    return boxes, scores, torch.randint(0, 3, (n,), generator=g).float()


def _in_score_then_index_order(keep: torch.Tensor, scores: torch.Tensor) -> bool:
    s, k = scores[keep].tolist(), keep.tolist()
    return all(s[i] > s[i + 1] or (s[i] == s[i + 1] and k[i] < k[i + 1])
               for i in range(len(k) - 1))


@pytest.mark.parametrize("n", [40, 300, 1200])
def test_both_batched_nms_paths_give_the_same_boxes_in_the_same_order(n):
    """torchvision's coordinate-offset path (CUDA below 25,000 boxes, the CPU below 1,000) and
    its per-class loop (above those): on tied scores their orders differ as torchvision calls
    them; fed the tie-free keys, both give the same indices, in (score, index) order."""
    boxes, scores, groups = _tied_boxes(n)
    trick = tie_free_batched_nms(boxes, scores, groups, 0.5, path=_batched_nms_coordinate_trick)
    loop = tie_free_batched_nms(boxes, scores, groups, 0.5, path=_batched_nms_vanilla)
    assert torch.equal(trick, loop)
    assert _in_score_then_index_order(trick, scores)
    assert torch.equal(tie_free_batched_nms(boxes, scores, groups, 0.5), trick)
    # The same set as torchvision's own choice: only the order of ties was left to chance.
    assert set(batched_nms(boxes, scores, groups, 0.5).tolist()) == set(trick.tolist())


@pytest.mark.parametrize("n", [300, 1200])  # the coordinate-offset path, the per-class loop
def test_detections_come_out_by_score_then_original_index(n):
    """Failed before for 1,200 boxes: batched_nms's per-class loop sorted the kept boxes with
    an unstable sort, so tied boxes came out in no fixed order."""
    boxes, scores, groups = _tied_boxes(n, seed=1)
    xywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
    classes = torch.nn.functional.one_hot(groups.long(), 3).float()
    pred = torch.cat([xywh, scores[:, None], classes], 1)[None]
    det = non_max_suppression(pred, conf_thres=0.01, iou_thres=0.5, multi_label=False,
                              max_det=10_000)[0]
    # Each detection's original row, by its box (every box is distinct).
    rows = [int(((boxes - d[:4]).abs().sum(1) < 1e-3).nonzero()[0]) for d in det]
    assert _in_score_then_index_order(torch.tensor(rows), scores)
    assert torch.equal(det[:, 4], scores[rows])
