"""The detection dataset, its epoch-aware sampler and the DataLoader that joins them.

A sample is addressed by ``(epoch, index)``: its augmentation is drawn from
``utils.base.repro.sample_rng(seed, epoch, index)``, so a sample looks the same whichever worker
loads it and whether or not the run was resumed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from utils.base.errors import ImageError, InputError
from utils.base.repro import epoch_permutation, epoch_weighted_draw, sample_rng
from utils.core.boxes import xywhn_to_xyxy, xyxy_to_xywh
from utils.data.augment import (
    augment_hsv,
    flip_lr,
    flip_ud,
    letterbox,
    mixup,
    mosaic,
    random_affine,
    resize_longest_side,
)
from utils.data.data_config import label_path_for
from utils.data.image_io import limit_opencv_threads, load_image
from utils.data.labels import LabelReport, image_weights, read_labels

# Images are decoded once at start anyway (to reject bad files early); a set this small in RAM
# is kept, which spares the PNG/JPEG decode of every sample (measured: 8.8 -> 1.8 ms a mosaic
# sample for the shapes set).
AUTO_CACHE_BYTES = 1 << 30


class Letterbox(NamedTuple):
    """Where an item's image came from: the original (height, width), and the scale and
    (left, top) padding that map original pixels to the item's (``x' = x * scale + left``)."""
    original: tuple[int, int]
    scale: float
    pad: tuple[float, float]


@dataclass
class DatasetReport:
    images: int = 0
    skipped_images: list[str] = field(default_factory=list)
    labels: LabelReport = field(default_factory=LabelReport)

    def summary(self) -> str:
        lab = self.labels
        text = (f"{self.images} images, {lab.boxes} boxes, {lab.missing} without a label file, "
                f"{lab.empty} with an empty one")
        if self.skipped_images or lab.skipped:
            text += (f"; skipped {len(self.skipped_images)} bad images and "
                     f"{len(lab.skipped)} bad label rows")
        return text


class YoloDataset(Dataset):
    """Images and YOLO labels, letterboxed (and augmented when ``augment``) to ``img_size``.

    Every image is decoded once here, in the main process, so a bad file is reported and skipped
    before training, never from inside a DataLoader worker. ``cache_images``: True keeps them
    all in RAM, False none, None (default) keeps them while they need under 1 GiB.

    ``mosaic_epochs``: the epochs (counted from 0) in which an augmented item may be a mosaic;
    None: every epoch (the hyp's close_mosaic turns it off for a run's last epochs).

    Items: ``(image [3, H, W] uint8 RGB, labels [N, 6] (0, class, x, y, w, h normalized),
    path, Letterbox)``; the :class:`Letterbox` maps boxes back to the original image.
    """

    def __init__(self, image_files: list[Path], num_classes: int, img_size: int,
                 augment: bool = False, hyp: dict | None = None, seed: int = 0,
                 rect: bool = False, batch_size: int = 16, stride: int = 32,
                 cache_images: bool | None = None, single_cls: bool = False,
                 mosaic_epochs: int | None = None):
        limit_opencv_threads()
        self.mosaic_epochs = mosaic_epochs
        self.img_size = img_size
        self.augment = augment
        self.hyp = hyp or {}
        self.seed = seed
        self.rect = rect
        self.report = DatasetReport()
        self.files: list[Path] = []
        self.image_sizes: list[tuple[int, int]] = []  # (height, width) of each original
        self.cache: list[np.ndarray] | None = [] if cache_images in (True, None) else None
        cached_bytes = 0
        for path in image_files:
            try:
                img = load_image(path)
            except ImageError as err:
                self.report.skipped_images.append(str(err))
                continue
            self.files.append(path)
            self.image_sizes.append(img.shape[:2])
            if self.cache is not None:
                self.cache.append(self._resize(img))
                cached_bytes += self.cache[-1].nbytes
                if cache_images is None and cached_bytes > AUTO_CACHE_BYTES:
                    self.cache = None  # too big to keep without being asked
        if not self.files:
            raise ImageError(f"none of the {len(image_files)} images could be read: "
                             + "; ".join(self.report.skipped_images[:3]))
        self.report.images = len(self.files)
        self.label_files = [label_path_for(p) for p in self.files]
        self.num_classes = num_classes
        self.labels, self.report.labels = read_labels(self.label_files, num_classes, single_cls)
        self.batch_shapes = self._rect_shapes(batch_size, stride) if rect else None

    def _rect_shapes(self, batch_size: int, stride: int) -> np.ndarray:
        """Sort by aspect ratio; each batch gets the smallest stride-multiple shape that fits."""
        aspect = np.array([h / w for h, w in self.image_sizes])
        order = aspect.argsort(kind="stable")
        for name in ("files", "image_sizes", "labels", "label_files"):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in order])
        if self.cache is not None:
            self.cache = [self.cache[i] for i in order]
        aspect = aspect[order]
        batch_count = math.ceil(len(aspect) / batch_size)
        shapes = np.ones((batch_count, 2))
        for b in range(batch_count):
            ar = aspect[b * batch_size:(b + 1) * batch_size]
            if ar.max() < 1:
                shapes[b] = [ar.max(), 1]
            elif ar.min() > 1:
                shapes[b] = [1, 1 / ar.min()]
        shapes = np.ceil(shapes * self.img_size / stride).astype(int) * stride
        self.batch_size = batch_size
        return shapes

    def __len__(self) -> int:
        return len(self.files)

    def _resize(self, img: np.ndarray) -> np.ndarray:
        return resize_longest_side(img, self.img_size, self.augment)

    def load_resized(self, index: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache[index]
        return self._resize(load_image(self.files[index]))

    def __getitem__(self, item):
        epoch, index = item if isinstance(item, tuple) else (0, item)
        rng = sample_rng(self.seed, epoch, index)
        hyp = self.hyp
        # The draw comes before the epoch test, so the epochs with mosaic keep every draw (and
        # bit) of a run that never closes it.
        use_mosaic = (self.augment and not self.rect and rng.random() < hyp.get("mosaic", 0.0)
                      and (self.mosaic_epochs is None or epoch < self.mosaic_epochs))
        img, boxes, placement = self._placed(index, use_mosaic, rng)
        # Drawn only when mixup is on, so a run without it keeps every later draw (and bit).
        if self.augment and not self.rect and hyp.get("mixup", 0.0) and \
                rng.random() < hyp["mixup"]:
            other = int(rng.integers(0, len(self)))
            other_img, other_boxes, _ = self._placed(other, use_mosaic, rng)
            img, boxes = mixup(img, boxes, other_img, other_boxes, rng)
        if self.augment:
            if any(hyp.get(k, 0.0) for k in ("hsv_h", "hsv_s", "hsv_v")):
                img = augment_hsv(img, rng, hyp.get("hsv_h", 0.0), hyp.get("hsv_s", 0.0),
                                  hyp.get("hsv_v", 0.0))
            if rng.random() < hyp.get("fliplr", 0.0):
                img, boxes = flip_lr(img, boxes)
            if rng.random() < hyp.get("flipud", 0.0):
                img, boxes = flip_ud(img, boxes)
        h, w = img.shape[:2]
        labels = torch.zeros((len(boxes), 6))
        if len(boxes):
            b = torch.from_numpy(boxes).float()
            labels[:, 1] = b[:, 0]
            labels[:, 2:6] = xyxy_to_xywh(b[:, 1:5]) / torch.tensor([w, h, w, h])
        image = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)))
        return image, labels, str(self.files[index]), placement

    def _placed(self, index: int, use_mosaic: bool, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, Letterbox]:
        """Image ``index`` at the training size with its boxes (pixels): in a mosaic of four or
        letterboxed, then (augmenting) through the random affine. The geometric half of an
        item, which mixup's second image goes through as well."""
        hyp = self.hyp
        h0, w0 = self.image_sizes[index]
        if use_mosaic:
            others = rng.integers(0, len(self), 3).tolist()
            images, boxes = [], []
            for k in [index] + others:
                img = self.load_resized(k)
                boxes.append(xywhn_to_xyxy(self.labels[k], img.shape[1], img.shape[0]))
                images.append(img)
            img, boxes = mosaic(images, boxes, self.img_size, rng)
            border = -self.img_size // 2
            placement = Letterbox((h0, w0), 1.0, (0.0, 0.0))
        else:
            img = self.load_resized(index)
            shape = (tuple(self.batch_shapes[index // self.batch_size]) if self.rect
                     else (self.img_size, self.img_size))
            resized_h, resized_w = img.shape[:2]
            img, scale, (left, top) = letterbox(img, shape, scaleup=self.augment)
            boxes = xywhn_to_xyxy(self.labels[index], resized_w * scale, resized_h * scale,
                                   left, top)
            border = 0
            placement = Letterbox((h0, w0), resized_w * scale / w0, (left, top))
        if self.augment:
            img, boxes = random_affine(img, boxes, rng, hyp.get("degrees", 0.0),
                                       hyp.get("translate", 0.0), hyp.get("scale", 0.0),
                                       hyp.get("shear", 0.0), border)
        return img, boxes, placement


def collate(batch):
    """Stack images; concatenate labels, writing each one's image index into column 0."""
    images, labels, paths, placements = zip(*batch)
    for i, lab in enumerate(labels):
        lab[:, 0] = i
    return torch.stack(images, 0), torch.cat(labels, 0), paths, placements


class EpochBatchSampler(Sampler):
    """Batches of ``(epoch, index)``; the order is a function of (seed, epoch) alone.

    Call :meth:`set_epoch` before iterating. With ``drop_last`` every batch has exactly
    ``batch_size`` samples. Under DDP ``batch_size`` is the global batch: process ``rank`` of
    ``world_size`` gets its contiguous share of each one, so a pinned batch size means the same
    samples per optimizer step at any world size. ``weights`` (``--image-weights``, with
    ``shuffle``): each epoch draws ``size`` samples with replacement in proportion to them
    instead of a permutation, from (seed, epoch) all the same.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int,
                 rank: int = 0, world_size: int = 1, weights: np.ndarray | None = None):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} does not split over {world_size} processes")
        self.size = size
        self.batch_size = batch_size
        self.shuffle = shuffle
        # Every process must take the same number of steps, or DDP waits forever.
        self.drop_last = drop_last or world_size > 1
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.weights = weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            order = range(self.size)
        elif self.weights is not None:
            order = epoch_weighted_draw(self.seed, self.epoch, self.weights)
        else:
            order = epoch_permutation(self.seed, self.epoch, self.size)
        batch = []
        for index in order:
            batch.append((self.epoch, index))
            if len(batch) == self.batch_size:
                share = self.batch_size // self.world_size
                yield batch[self.rank * share:(self.rank + 1) * share]
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


def create_dataloader(dataset: YoloDataset, batch_size: int, workers: int, shuffle: bool,
                      drop_last: bool = False, seed: int = 0, rank: int = 0,
                      world_size: int = 1, pin_memory: bool = False,
                      weighted: bool = False) -> DataLoader:
    """``pin_memory``: page-locked batches, for a copy to a GPU only; a CPU run on a machine
    that has a GPU would pay for the pinning and gain nothing. ``weighted``
    (``--image-weights``): class-balanced sampling (:func:`utils.data.labels.image_weights`)."""
    weights = None
    if weighted:
        weights = image_weights(dataset.labels, dataset.num_classes)
        if not weights.sum() > 0:
            raise InputError(f"--image-weights: none of the {len(dataset)} training images has "
                             "a box, so there is no class to balance; drop --image-weights")
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle and not dataset.rect,
                                drop_last, seed, rank, world_size, weights)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=False,
                      worker_init_fn=limit_opencv_threads)
