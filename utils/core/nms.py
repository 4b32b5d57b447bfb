"""Non-maximum suppression of decoded YOLO outputs, on torchvision's batched NMS, with ties in
score broken the same way on every device.

torchvision's NMS orders boxes by score with sorts that need not keep tied boxes in any order
(the CUDA kernel's and the per-class path's sorts are not stable), and its ``batched_nms``
takes the coordinate-offset path or the per-class loop by the device (the loop above 4,000
box coordinates on the CPU, above 100,000 on CUDA). Tied scores are common (bf16 outputs,
a class score of 1.0), and which of two tied overlapping boxes survives decides a detection.
So here the boxes are ordered by (score descending, index ascending) first, NMS sees distinct
keys in that order (no sort has a tie left to break), the path is chosen by the CPU's rule on
every device, and the kept boxes come out in the same order: identical outputs give identical
detections on the CPU and a GPU. On untied scores the kept boxes and their order are what
``batched_nms`` gave.
"""
from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from utils.core.boxes import xywh_to_xyxy

try:  # private in torchvision (0.26 to 0.29 at least): the two paths batched_nms chooses from
    from torchvision.ops.boxes import _batched_nms_coordinate_trick, _batched_nms_vanilla
except ImportError:  # a torchvision without them: its public choice, on the same tie-free keys
    _batched_nms_coordinate_trick = _batched_nms_vanilla = batched_nms

# torchvision's CPU rule: the per-class loop above this many box coordinates (1,000 boxes).
PER_CLASS_ABOVE = 4000


def detection_scores(prediction: torch.Tensor) -> torch.Tensor:
    """Each box's score per class, [N, C] (one class: [N, 1]), from one image's [N, 5 + C]
    decoded outputs. One class: the class output is never trained (the loss has no class
    term), so the score is the objectness alone."""
    return prediction[:, 5:] * prediction[:, 4:5] if prediction.shape[1] > 6 \
        else prediction[:, 4:5]


def highest_score(prediction: torch.Tensor) -> float:
    """The best score of any box of one image's [N, 5 + C] outputs, before any threshold:
    what to tell a user whose threshold nothing passed. 0.0 for no boxes."""
    return float(detection_scores(prediction).max()) if len(prediction) else 0.0


def non_max_suppression(prediction: torch.Tensor, conf_thres: float = 0.001,
                        iou_thres: float = 0.6, classes: list[int] | None = None,
                        multi_label: bool = True, agnostic: bool = False,
                        max_det: int = 300) -> list[torch.Tensor]:
    """Filter detections per image.

    prediction: [B, N, 5 + C] xywh pixels, objectness, class scores (sigmoid).
    Returns per image a [n, 6] tensor: x1, y1, x2, y2 (pixels), score, class.
    ``multi_label`` keeps one box per class above ``conf_thres`` (for mAP); otherwise only the best
    class. There is no time limit: the result never depends on how fast the machine is.
    """
    out = []
    for x in prediction:
        x = x[x[:, 4] > conf_thres]
        if not len(x):
            out.append(torch.zeros((0, 6), device=prediction.device))
            continue
        scores = detection_scores(x)
        boxes = xywh_to_xyxy(x[:, :4])
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=True)
            det = torch.cat((boxes[i], scores[i, j, None], j[:, None].float()), 1)
        else:
            conf, j = scores.max(1, keepdim=True)
            det = torch.cat((boxes, conf, j.float()), 1)[conf.view(-1) > conf_thres]
        if classes is not None:
            det = det[(det[:, 5:6] == torch.tensor(classes, device=det.device)).any(1)]
        if not len(det):
            out.append(det)
            continue
        groups = torch.zeros_like(det[:, 5]) if agnostic else det[:, 5]
        keep = tie_free_batched_nms(det[:, :4], det[:, 4], groups, iou_thres)[:max_det]
        out.append(det[keep])
    return out


def tie_free_batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                         iou_thres: float, path=None) -> torch.Tensor:
    """The indices of the boxes NMS keeps within each group, ordered by (score descending,
    index ascending), whichever device and path computes them. ``path``: one of torchvision's
    two (default: the per-class loop above :data:`PER_CLASS_ABOVE` coordinates, as on the CPU)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    # Distinct keys, decreasing in that order (exact in fp32 up to 2**24 boxes): every sort
    # inside the kernels agrees on them, stable or not.
    keys = torch.arange(len(order), 0, -1, dtype=torch.float32, device=scores.device)
    ordered = boxes[order].float()
    if path is None:
        path = _batched_nms_vanilla if ordered.numel() > PER_CLASS_ABOVE \
            else _batched_nms_coordinate_trick
    kept = path(ordered, keys, groups[order], iou_thres)
    # Positions in ``order`` ascending: the order of (score descending, index ascending).
    return order[torch.sort(kept).values]
