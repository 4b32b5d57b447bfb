"""Non-maximum suppression of decoded YOLO outputs, on torchvision's batched NMS."""
from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from utils.core.boxes import xywh_to_xyxy


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
        keep = batched_nms(det[:, :4], det[:, 4], groups, iou_thres)[:max_det]
        out.append(det[keep])
    return out
