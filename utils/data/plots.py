"""Images of batches with their boxes (labels or detections)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from utils.core.boxes import xywh_to_xyxy


def class_color(cls: int) -> tuple[int, int, int]:
    """A fixed BGR colour per class, the same in every run and every image."""
    palette = ((56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
               (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
               (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
               (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255))
    return palette[int(cls) % len(palette)]


def draw_box(img: np.ndarray, xyxy, cls: int, label: str, thickness: int = 1) -> None:
    """A box in its class's colour, and its label above it ("" for none)."""
    color = class_color(cls)
    p1 = (int(xyxy[0]), int(xyxy[1]))
    p2 = (int(xyxy[2]), int(xyxy[3]))
    cv2.rectangle(img, p1, p2, color, thickness, cv2.LINE_AA)
    if label:
        cv2.putText(img, label, (p1[0], max(p1[1] - 3, 8)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * thickness, color, thickness, cv2.LINE_AA)


def plot_batch(images: torch.Tensor, boxes: list[torch.Tensor], path: str | Path,
               names: list[str], max_images: int = 16) -> None:
    """Save a mosaic of ``images`` [B, 3, H, W] (RGB, uint8 or 0..1) with, per image, boxes
    [n, 6]: x1, y1, x2, y2 (pixels), score (1 for labels), class."""
    images = images[:max_images].detach().cpu()
    if images.dtype != torch.uint8:
        images = (images * 255).clamp(0, 255).to(torch.uint8)
    b, _, h, w = images.shape
    cols = int(np.ceil(np.sqrt(b)))
    rows = int(np.ceil(b / cols))
    canvas = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    for i in range(b):
        tile = np.ascontiguousarray(images[i].permute(1, 2, 0).numpy()[:, :, ::-1])
        for x1, y1, x2, y2, score, cls in boxes[i].detach().cpu().tolist():
            name = names[int(cls)] if int(cls) < len(names) else str(int(cls))
            label = name if score >= 1 else f"{name} {score:.2f}"  # labels carry score 1
            draw_box(tile, (x1, y1, x2, y2), int(cls), label)
        r, c = divmod(i, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    cv2.imwrite(str(path), canvas)


def labels_to_boxes(labels: torch.Tensor, batch_size: int, h: int, w: int) -> list[torch.Tensor]:
    """Batch labels [N, 6] (image, class, x, y, w, h normalized) -> per image [n, 6] xyxy pixels,
    score 1, class."""
    out = []
    for i in range(batch_size):
        lab = labels[labels[:, 0] == i]
        xyxy = xywh_to_xyxy(lab[:, 2:6]) * torch.tensor([w, h, w, h])
        out.append(torch.cat((xyxy, torch.ones(len(lab), 1), lab[:, 1:2]), 1))
    return out
