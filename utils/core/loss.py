"""The YOLOv3 loss: box regression by GIoU (or CIoU), objectness BCE against an IoU target,
class BCE. Pure functions: anchors, strides and gains come in as arguments.

Targets are [T, 6] rows ``(image index, class, x, y, w, h)`` with xywh normalized to the input
image. Predictions are the training outputs of ``Darknet``, one [B, A, H, W, 5 + C] tensor per
yolo layer.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from utils.core.boxes import decode_xy, paired_iou, wh_ratio_match
from utils.core.reduction import fixed_order_mean

# The order of the loss parts in yolo_loss's ``parts`` tensor (and in results.txt).
LOSS_PARTS = ("box", "obj", "cls", "total")


@dataclass
class LayerTargets:
    """The targets assigned to one yolo layer; all tensors have one row per assignment."""
    image: torch.Tensor    # [n] image index in the batch
    anchor: torch.Tensor   # [n] anchor index within the layer
    gy: torch.Tensor       # [n] grid row
    gx: torch.Tensor       # [n] grid column
    box: torch.Tensor      # [n, 4] x, y offset within the cell, w, h (grid units)
    anchor_wh: torch.Tensor  # [n, 2] the matched anchor (grid units)
    cls: torch.Tensor      # [n] class index


def build_targets(targets: torch.Tensor, anchors: list[torch.Tensor],
                  grid_shapes: list[tuple[int, int]], anchor_t: float,
                  neighbours: list[bool] | None = None) -> list[LayerTargets]:
    """Assign each target to every anchor whose shape is within ``anchor_t`` of its own, in the
    grid cell holding its centre; on a layer whose ``neighbours`` is true also in the two
    cells beside it nearest the centre, one across and one up or down (yolov5's assignment:
    three times the positives), whose decode must reach half a cell beyond the cell
    (``scale_x_y`` 2, utils.core.boxes.decode_xy).

    anchors: per layer [A, 2] in grid units (pixels / stride); grid_shapes: per layer (H, W);
    neighbours: per layer (None: none anywhere).
    """
    out = []
    neighbours = neighbours or [False] * len(anchors)
    for layer_anchors, (ny, nx), beside in zip(anchors, grid_shapes, neighbours):
        # Scaled by Python numbers, not a tensor of (nx, ny, nx, ny): a tensor built from host
        # values is a host-to-device copy on a GPU, each call. The products are the same.
        boxes = targets[:, 2:6].clone()  # [T, 4] xywh in grid units
        boxes[:, 0::2] *= nx
        boxes[:, 1::2] *= ny
        match = wh_ratio_match(boxes[:, 2:4], layer_anchors, anchor_t)  # [A, T]
        anchor_index, target_index = match.nonzero(as_tuple=True)
        t = targets[target_index]
        b = boxes[target_index]
        points = b[:, :2]  # where each assignment's cell is found: its centre
        if beside:
            t, b, anchor_index, points = _with_neighbours(t, b, anchor_index, nx, ny)
        cell = points.long()
        gx, gy = cell[:, 0].clamp(0, nx - 1), cell[:, 1].clamp(0, ny - 1)
        offset = b[:, :2] - torch.stack((gx, gy), dim=1).to(b.dtype)
        out.append(LayerTargets(t[:, 0].long(), anchor_index, gy, gx,
                                torch.cat((offset, b[:, 2:4]), dim=1),
                                layer_anchors[anchor_index], t[:, 1].long()))
    return out


def _with_neighbours(t: torch.Tensor, b: torch.Tensor, anchor_index: torch.Tensor, nx: int,
                     ny: int) -> tuple[torch.Tensor, ...]:
    """The assignments ``t`` [n, 6], ``b`` [n, 4] (xywh in grid units), ``anchor_index`` [n],
    then their copies for the neighbouring cell nearer the centre in x and in y (where that
    cell is on the grid): [n + k, ...] each, and ``points`` [n + k, 2], a point inside each
    assignment's cell (the centre, or the centre moved half a cell toward the neighbour). A
    copy keeps the true box, so its centre lies -0.5..1.5 cells from its cell's corner. The
    order is fixed: the centres' assignments, then left, right, up, down."""
    xy = b[:, :2]
    frac = xy - xy.floor()
    left = (frac[:, 0] < 0.5) & (xy[:, 0] > 1.0)
    right = (frac[:, 0] > 0.5) & (xy[:, 0] < nx - 1.0)
    up = (frac[:, 1] < 0.5) & (xy[:, 1] > 1.0)
    down = (frac[:, 1] > 0.5) & (xy[:, 1] < ny - 1.0)
    shifts = ((left, (-0.5, 0.0)), (right, (0.5, 0.0)), (up, (0.0, -0.5)), (down, (0.0, 0.5)))
    ts, bs, anchors, points = [t], [b], [anchor_index], [xy]
    for keep, (dx, dy) in shifts:
        ts.append(t[keep])
        bs.append(b[keep])
        anchors.append(anchor_index[keep])
        moved = xy[keep].clone()  # shifted by Python numbers: no tensor from host values
        moved[:, 0] += dx
        moved[:, 1] += dy
        points.append(moved)
    return torch.cat(ts), torch.cat(bs), torch.cat(anchors), torch.cat(points)


@functools.lru_cache(maxsize=16)
def _constant(value: float, device: torch.device) -> torch.Tensor:
    """A [1] fp32 tensor of ``value`` on ``device``, made once: the BCE positive weights
    would otherwise be copied from the host at every call. Read only."""
    return torch.tensor([value], device=device)


def _unique_max(flat_index: torch.Tensor, values: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """For duplicate indices keep the largest value, so an indexed write does not depend on
    which duplicate a device happens to write last. Returns (unique indices, their values)."""
    by_value = torch.sort(values, stable=True).indices
    by_index = torch.sort(flat_index[by_value], stable=True).indices
    order = by_value[by_index]  # sorted by index, then by value within each index
    sorted_index = flat_index[order]
    last = torch.ones_like(sorted_index, dtype=torch.bool)
    last[:-1] = sorted_index[1:] != sorted_index[:-1]
    return sorted_index[last], values[order][last]


def class_targets(logits: torch.Tensor, cls: torch.Tensor, label_smoothing: float = 0.0
                  ) -> torch.Tensor:
    """The class BCE targets [n, C] of ``n`` assignments of classes ``cls`` [n]: yolov5's
    smoothing (its ``smooth_BCE``), ``1 - eps / 2`` for the true class and ``eps / 2`` for the
    others. At ``eps`` 0 these are exactly the hard targets 1 and 0 (the same bits)."""
    target = torch.full_like(logits, 0.5 * label_smoothing)
    target[torch.arange(len(cls), device=logits.device), cls] = 1.0 - 0.5 * label_smoothing
    return target


def _bce(pos_weight: float, device: torch.device, fixed_order: bool):
    """BCE with logits and a positive weight, averaged: by torch's fused mean, or (fixed_order)
    elementwise and then :func:`fixed_order_mean`, whose order no thread count changes."""
    if not fixed_order:
        return nn.BCEWithLogitsLoss(pos_weight=_constant(pos_weight, device))
    elementwise = nn.BCEWithLogitsLoss(pos_weight=_constant(pos_weight, device),
                                       reduction="none")
    return lambda logits, target: fixed_order_mean(elementwise(logits, target))


def yolo_loss(preds: list[torch.Tensor], targets: torch.Tensor, anchors: list[torch.Tensor],
              strides: list[int], hyp: dict, label_smoothing: float = 0.0,
              fixed_order: bool = False, xy_scales: list[float] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(loss, parts)``: loss is a scalar scaled by the batch size (the gradient of a
    sum over images), parts is [4] in LOSS_PARTS order (box, obj, cls, total) per image,
    detached.

    anchors: per layer [A, 2] in pixels; strides: per layer, pixels per grid cell;
    hyp keys: box, obj, cls (gains), cls_pw, obj_pw (BCE positive weights), anchor_t, iou_type;
    label_smoothing: the class targets' epsilon (:func:`class_targets`; 0: hard targets);
    fixed_order: every mean summed in an order that does not depend on the thread count
    (utils.core.reduction; --portable's). Off, the means are torch's fused ones, whose bits
    the runs recorded so far hold; xy_scales: per layer, the cfg's ``scale_x_y`` (None: 1
    everywhere), the centre decode, and at 2 or more the neighbouring cells' assignments.
    """
    device = preds[0].device
    dtype = preds[0].dtype
    grid_anchors = [a.to(device) / s for a, s in zip(anchors, strides)]
    xy_scales = xy_scales or [1.0] * len(preds)
    assigned = build_targets(targets.to(device), grid_anchors,
                             [tuple(p.shape[2:4]) for p in preds], hyp["anchor_t"],
                             [s >= 2.0 for s in xy_scales])
    mean = fixed_order_mean if fixed_order else torch.mean
    bce_cls = _bce(hyp["cls_pw"], device, fixed_order)
    bce_obj = _bce(hyp["obj_pw"], device, fixed_order)
    box_loss = torch.zeros((), device=device, dtype=dtype)
    obj_loss = torch.zeros((), device=device, dtype=dtype)
    cls_loss = torch.zeros((), device=device, dtype=dtype)
    for p, t, xy_scale in zip(preds, assigned, xy_scales):
        batch, num_anchors, ny, nx, outputs = p.shape
        target_obj = torch.zeros(p.shape[:4], device=device, dtype=dtype)
        if len(t.image):
            ps = p[t.image, t.anchor, t.gy, t.gx]  # [n, 5 + C]
            pxy = decode_xy(ps[:, :2], xy_scale)
            pwh = ps[:, 2:4].clamp(max=10.0).exp() * t.anchor_wh
            iou = paired_iou(torch.cat((pxy, pwh), 1), t.box, hyp.get("iou_type", "giou"))
            box_loss = box_loss + mean(1.0 - iou)
            flat = ((t.image * num_anchors + t.anchor) * ny + t.gy) * nx + t.gx
            index, value = _unique_max(flat, iou.detach().clamp(min=0).to(dtype))
            target_obj.view(-1)[index] = value
            if outputs > 6:  # more than one class
                target_cls = class_targets(ps[:, 5:], t.cls, label_smoothing)
                cls_loss = cls_loss + bce_cls(ps[:, 5:], target_cls)
        obj_loss = obj_loss + bce_obj(p[..., 4], target_obj)
    box_loss = box_loss * hyp["box"]
    obj_loss = obj_loss * hyp["obj"]
    cls_loss = cls_loss * hyp["cls"]
    total = box_loss + obj_loss + cls_loss
    parts = torch.stack((box_loss, obj_loss, cls_loss, total)).detach()
    return total * preds[0].shape[0], parts
