"""Geometric and colour transforms of an image with its boxes.

Boxes here are (N, 5) float arrays ``[class, x1, y1, x2, y2]`` in pixels of the image they go with.
Every random choice comes from the ``rng`` argument (see utils.base.repro.sample_rng), never from a
global generator.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

PAD_VALUE = 114  # grey, as in the ultralytics trainer
# The hyperparameters of online augmentation: what --repro turns off.
AUGMENT_KEYS = ("hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "fliplr",
                "flipud", "mosaic", "mixup")
# yolov5's mixup ratio: beta(32, 32), a blend near half and half (its spread about 0.06).
MIXUP_BETA = 32.0


def letterbox(img: np.ndarray, new_shape: tuple[int, int], scaleup: bool = True
              ) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio, then pad to ``new_shape`` (h, w), centred.

    Returns the image, the scale applied and the (left, top) padding in pixels, so boxes map as
    ``x' = x * scale + left``.
    """
    h, w = img.shape[:2]
    scale = min(new_shape[0] / h, new_shape[1] / w)
    if not scaleup:
        scale = min(scale, 1.0)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    if (new_w, new_h) != (w, h):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (new_shape[1] - new_w) / 2, (new_shape[0] - new_h) / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    if top or bottom or left or right:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                 value=(PAD_VALUE,) * 3)
    return img, scale, (left, top)


def resize_longest_side(img: np.ndarray, size: int, augment: bool = False) -> np.ndarray:
    """Resize so the longer side is ``size``, keeping the aspect ratio: the first step of every
    image the model sees (training, test.py and detect.py alike). Shrinking uses area
    interpolation (no aliasing) except under augmentation, which the ultralytics trainer also
    does linearly."""
    h, w = img.shape[:2]
    r = size / max(h, w)
    if r != 1:
        interp = cv2.INTER_AREA if r < 1 and not augment else cv2.INTER_LINEAR
        img = cv2.resize(img, (int(round(w * r)), int(round(h * r))), interpolation=interp)
    return img


def augment_hsv(img: np.ndarray, rng: np.random.Generator, hgain: float, sgain: float,
                vgain: float) -> np.ndarray:
    """Random hue, saturation and value gains, applied through lookup tables."""
    gains = rng.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def random_affine(img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                  degrees: float = 0.0, translate: float = 0.0, scale: float = 0.0,
                  shear: float = 0.0, border: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rotate, scale, translate and shear about the image centre.

    ``border`` < 0 crops (used after mosaic: a 2s canvas comes out as s). Boxes are transformed by
    their corners, clipped, and dropped when mostly lost.
    """
    height = img.shape[0] + border * 2
    width = img.shape[1] + border * 2
    angle = rng.uniform(-degrees, degrees)
    s = rng.uniform(1 - scale, 1 + scale)
    rotation = np.eye(3)
    rotation[:2] = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), angle, s)
    translation = np.eye(3)
    translation[0, 2] = rng.uniform(-translate, translate) * img.shape[1] + border
    translation[1, 2] = rng.uniform(-translate, translate) * img.shape[0] + border
    shearing = np.eye(3)
    shearing[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    shearing[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    matrix = shearing @ translation @ rotation
    if border != 0 or not np.allclose(matrix, np.eye(3)):
        img = cv2.warpAffine(img, matrix[:2], dsize=(width, height), flags=cv2.INTER_LINEAR,
                             borderValue=(PAD_VALUE,) * 3)
    if len(boxes) == 0:
        return img, boxes
    corners = np.ones((len(boxes) * 4, 3))
    corners[:, :2] = boxes[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(-1, 2)
    corners = (corners @ matrix.T)[:, :2].reshape(-1, 8)
    xs, ys = corners[:, [0, 2, 4, 6]], corners[:, [1, 3, 5, 7]]
    new = np.stack((xs.min(1), ys.min(1), xs.max(1), ys.max(1)), axis=1)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
    keep = box_survives(boxes[:, 1:5] * s, new)
    return img, np.concatenate((boxes[keep, :1], new[keep]), axis=1)


def box_survives(before: np.ndarray, after: np.ndarray, min_size: float = 2.0,
                 min_area_ratio: float = 0.2, max_aspect: float = 20.0) -> np.ndarray:
    """Which boxes (xyxy, sized [N, 4]) are still objects after a transform: big enough, enough
    of their area kept, not a sliver."""
    w0, h0 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w1, h1 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w1 / (h1 + 1e-16), h1 / (w1 + 1e-16))
    return ((w1 > min_size) & (h1 > min_size) & (w1 * h1 / (w0 * h0 + 1e-16) > min_area_ratio)
            & (aspect < max_aspect))


def flip_lr(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right; boxes follow their objects."""
    width = img.shape[1]
    boxes = boxes.copy()
    boxes[:, [1, 3]] = width - boxes[:, [3, 1]]
    return np.ascontiguousarray(img[:, ::-1]), boxes


def flip_ud(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror up-down; boxes follow their objects."""
    height = img.shape[0]
    boxes = boxes.copy()
    boxes[:, [2, 4]] = height - boxes[:, [4, 2]]
    return np.ascontiguousarray(img[::-1]), boxes


def mosaic(images: list[np.ndarray], boxes: list[np.ndarray], size: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Four images around a random centre on a (2*size, 2*size) canvas.

    Each image must already be resized so its longer side is ``size``; ``boxes[k]`` are in its
    pixels. Returns the canvas and the boxes in canvas pixels.
    """
    canvas = np.full((size * 2, size * 2, 3), PAD_VALUE, dtype=np.uint8)
    xc, yc = (int(v) for v in rng.uniform(size * 0.5, size * 1.5, 2))
    placed = []
    for k, (img, b) in enumerate(zip(images, boxes)):
        h, w = img.shape[:2]
        if k == 0:    # top left
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
        elif k == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, size * 2), yc
            x1b, y1b = 0, h - (y2a - y1a)
        elif k == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(size * 2, yc + h)
            x1b, y1b = w - (x2a - x1a), 0
        else:         # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, size * 2), min(size * 2, yc + h)
            x1b, y1b = 0, 0
        x2b, y2b = x1b + (x2a - x1a), y1b + (y2a - y1a)
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
        shifted = b.copy()
        shifted[:, [1, 3]] += x1a - x1b
        shifted[:, [2, 4]] += y1a - y1b
        placed.append(shifted)
    all_boxes = np.concatenate(placed, 0) if placed else np.zeros((0, 5))
    clipped = all_boxes.copy()
    clipped[:, 1:5] = clipped[:, 1:5].clip(0, 2 * size)
    keep = box_survives(all_boxes[:, 1:5], clipped[:, 1:5], min_area_ratio=0.1)
    return canvas, clipped[keep]


def mixup(img: np.ndarray, boxes: np.ndarray, other: np.ndarray, other_boxes: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """yolov5's mixup: the two images (same shape) blended at a ratio drawn from
    beta(32, 32), and both images' boxes kept (concatenated, ``img``'s first)."""
    ratio = rng.beta(MIXUP_BETA, MIXUP_BETA)
    blended = img * ratio + other * (1 - ratio)  # float64, then truncated, as yolov5 does
    return blended.astype(np.uint8), np.concatenate((boxes, other_boxes), 0)
