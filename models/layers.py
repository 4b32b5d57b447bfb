"""The small layers a darknet cfg is built from, besides torch's own Conv2d and MaxPool2d."""
from __future__ import annotations

import torch
from torch import nn

from utils.core.boxes import decode_xy


class RepeatUpsample(nn.Module):
    """Nearest-neighbour upsampling by an integer factor, written as expand + reshape.

    The article's deterministic replacement for ``nn.Upsample(mode="nearest")``. Its forward is
    bit-identical to nearest upsampling. Its backward is autograd's sum over the expanded
    dimensions, a fixed reduction with no atomic adds, so it is deterministic on every device;
    it sums each ``scale x scale`` window in another order than the upsample kernel, so the
    gradients agree with ``nn.Upsample``'s only up to float rounding.
    """

    def __init__(self, scale_factor: int):
        super().__init__()
        self.scale_factor = int(scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.scale_factor
        return x[:, :, :, None, :, None].expand(b, c, h, s, w, s).reshape(b, c, h * s, w * s)

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}, deterministic=True"


class Route(nn.Module):
    """Darknet ``[route]``: concatenate the outputs of earlier layers along channels."""

    def __init__(self, layers: list[int]):
        super().__init__()
        self.layers = layers  # absolute indices

    def forward(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        if len(self.layers) == 1:
            return outputs[self.layers[0]]
        return torch.cat([outputs[i] for i in self.layers], dim=1)

    def extra_repr(self) -> str:
        return f"layers={self.layers}"


class Shortcut(nn.Module):
    """Darknet ``[shortcut]``: add an earlier layer's output to the previous one (a residual)."""

    def __init__(self, source: int):
        super().__init__()
        self.source = source  # absolute index

    def forward(self, x: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        return x + outputs[self.source]

    def extra_repr(self) -> str:
        return f"from={self.source}"


class YOLOLayer(nn.Module):
    """Darknet ``[yolo]``: reshapes a conv output into per-anchor predictions.

    Training: returns the raw predictions, sized ``[B, A, H, W, 5 + C]`` (x, y, w, h, obj, classes).
    Inference: also decodes them, in fp32 whatever the forward pass's precision, into
    ``[B, A*H*W, 5 + C]``: box centre and size in input pixels (xywh), then sigmoid objectness
    and class scores.

    ``scale_x_y`` (darknet's key of the same name, YOLOv4's cfgs): the centre decodes as
    ``sigmoid * s - (s - 1) / 2`` cells from the cell's corner, so at 2 it reaches half a cell
    beyond the cell on each side, where a neighbouring cell's target lies (the loss assigns
    those, utils.core.loss.build_targets). At 1, darknet's YOLOv3 decode, to the bit.
    """

    def __init__(self, anchors: torch.Tensor, num_classes: int, stride: int,
                 scale_x_y: float = 1.0):
        super().__init__()
        self.scale_x_y = scale_x_y
        self.register_buffer("anchors", anchors.float())  # (A, 2) in pixels
        self.num_anchors = len(anchors)
        self.num_classes = num_classes
        self.num_outputs = num_classes + 5
        self.stride = stride

    def forward(self, p: torch.Tensor):
        bs, _, ny, nx = p.shape
        p = p.view(bs, self.num_anchors, self.num_outputs, ny, nx).permute(0, 1, 3, 4, 2)
        p = p.contiguous()  # (B, A, H, W, 5 + C)
        if self.training:
            return p
        raw = p
        # Decode in fp32 whatever the forward pass ran in: bf16 would round box coordinates
        # by 1-2 px and scores by about 0.004, a bias in every mixed-precision evaluation.
        p = p.float()
        yv, xv = torch.meshgrid(torch.arange(ny, device=p.device),
                                torch.arange(nx, device=p.device), indexing="ij")
        grid = torch.stack((xv, yv), dim=-1).view(1, 1, ny, nx, 2).to(p.dtype)
        anchor_wh = self.anchors.view(1, self.num_anchors, 1, 1, 2).to(p.dtype)
        xy = (decode_xy(p[..., :2], self.scale_x_y) + grid) * self.stride
        # Clamp before exp so an untrained model cannot produce inf box sizes.
        wh = p[..., 2:4].clamp(max=10.0).exp() * anchor_wh
        scores = p[..., 4:].sigmoid()
        return torch.cat((xy, wh, scores), dim=-1).view(bs, -1, self.num_outputs), raw

    def extra_repr(self) -> str:
        return (f"anchors={self.anchors.tolist()}, classes={self.num_classes}, "
                f"stride={self.stride}" + (f", scale_x_y={self.scale_x_y:g}"
                                           if self.scale_x_y != 1.0 else ""))
