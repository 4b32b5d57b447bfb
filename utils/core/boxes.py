"""Box format conversions and IoU variants.

Formats: ``xyxy`` = (x1, y1, x2, y2) corners, ``xywh`` = (x_center, y_center, width, height);
both in the same units (pixels or normalized), the functions do not care which.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou, complete_box_iou_loss, generalized_box_iou_loss

__all__ = ["xywh_to_xyxy", "xyxy_to_xywh", "xywhn_to_xyxy", "box_iou", "paired_iou",
           "wh_ratio_match", "letterbox_to_original"]


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] xywh -> [..., 4] xyxy."""
    xy, wh = boxes[..., :2], boxes[..., 2:4]
    return torch.cat((xy - wh / 2, xy + wh / 2), dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] xyxy -> [..., 4] xywh."""
    return torch.cat(((boxes[..., :2] + boxes[..., 2:4]) / 2, boxes[..., 2:4] - boxes[..., :2]),
                     dim=-1)


def xywhn_to_xyxy(labels: np.ndarray, w: float, h: float, left: float = 0, top: float = 0
                  ) -> np.ndarray:
    """YOLO label rows [N, 5] (class, x, y, w, h normalized) -> [N, 5] (class, x1, y1, x2, y2)
    in pixels of a ``w`` x ``h`` image placed at (left, top). Computed in the rows' dtype
    (float32 labels in the data pipeline, float64 for COCO ground truth), returned as float64."""
    out = labels.astype(np.float64).copy()
    out[:, 1] = w * (labels[:, 1] - labels[:, 3] / 2) + left
    out[:, 2] = h * (labels[:, 2] - labels[:, 4] / 2) + top
    out[:, 3] = w * (labels[:, 1] + labels[:, 3] / 2) + left
    out[:, 4] = h * (labels[:, 2] + labels[:, 4] / 2) + top
    return out


def letterbox_to_original(boxes: torch.Tensor, scale: float, pad: tuple[float, float],
                          shape: tuple[int, int]) -> torch.Tensor:
    """[N, 4] xyxy in the pixels of a letterboxed image -> [N, 4] xyxy in the original image's
    pixels, clipped to it. ``scale`` and ``pad`` (left, top) are what the letterbox applied
    (``x' = x * scale + left``); ``shape`` is the original (height, width)."""
    out = boxes.clone()
    out[:, [0, 2]] = ((out[:, [0, 2]] - pad[0]) / scale).clamp(0, shape[1])
    out[:, [1, 3]] = ((out[:, [1, 3]] - pad[1]) / scale).clamp(0, shape[0])
    return out


def paired_iou(pred: torch.Tensor, target: torch.Tensor, kind: str = "giou") -> torch.Tensor:
    """IoU variant of each pair: ``pred[i]`` with ``target[i]``, both [N, 4] xywh -> [N].

    ``kind``: ``"giou"`` (generalized IoU, in -1..1) or ``"ciou"`` (complete IoU).
    """
    a, b = xywh_to_xyxy(pred), xywh_to_xyxy(target)
    if kind == "giou":
        return 1.0 - generalized_box_iou_loss(a, b, reduction="none")
    if kind == "ciou":
        return 1.0 - complete_box_iou_loss(a, b, reduction="none")
    raise ValueError(f"kind must be 'giou' or 'ciou', got {kind!r}")


def wh_ratio_match(target_wh: torch.Tensor, anchor_wh: torch.Tensor,
                   threshold: float) -> torch.Tensor:
    """Which (anchor, target) pairs have width and height within a factor ``threshold``.

    target_wh [N, 2], anchor_wh [A, 2] (same units) -> bool [A, N].
    """
    ratio = target_wh[None, :, :] / anchor_wh[:, None, :]
    worst = torch.max(ratio, 1.0 / ratio).max(dim=2).values
    return worst < threshold


def decode_xy(t: torch.Tensor, scale_x_y: float) -> torch.Tensor:
    """[..., 2] raw centre outputs -> the centre's offset from its cell's corner, in cells:
    ``sigmoid(t)`` (scale 1, the same ops and bits as before the key was read), else
    ``sigmoid(t) * s - (s - 1) / 2``, darknet's ``scale_x_y``."""
    if scale_x_y == 1.0:
        return t.sigmoid()
    return t.sigmoid() * scale_x_y - 0.5 * (scale_x_y - 1.0)
