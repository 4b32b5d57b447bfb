"""One epoch of training, and the optimizer it steps."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from utils.device import memory_gb
from utils.ema import ModelEMA
from utils.inputs import to_model_input
from utils.loss import yolo_loss
from utils.plots import labels_to_boxes, plot_batch
from utils.repro import derive_seed
from utils.schedule import warmup_values


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names epoch and batch."""


def build_optimizer(model: nn.Module, hyp: dict, adam: bool) -> torch.optim.Optimizer:
    """Three parameter groups: batch-norm weights (no decay), conv weights (decay), biases (no
    decay). Group order is fixed, so optimizer state maps back on resume.

    Batch norm is matched by its base class, so ``SyncBatchNorm`` (``--sync-bn``) counts too.
    """
    bn_weights, conv_weights, biases = [], [], []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            bn_weights.append(module.weight)
            biases.append(module.bias)
        elif isinstance(module, nn.Conv2d):
            conv_weights.append(module.weight)
            if module.bias is not None:
                biases.append(module.bias)
    if adam:
        optimizer = torch.optim.Adam(bn_weights, lr=hyp["lr0"], betas=(hyp["momentum"], 0.999))
    else:
        optimizer = torch.optim.SGD(bn_weights, lr=hyp["lr0"], momentum=hyp["momentum"],
                                    nesterov=True)
    optimizer.add_param_group({"params": conv_weights, "weight_decay": hyp["weight_decay"]})
    optimizer.add_param_group({"params": biases})
    return optimizer


@dataclass
class EpochStats:
    losses: list[float]  # box, obj, cls, total: mean per image over the epoch
    targets: int         # targets in the last batch (as the ultralytics column)
    img_size: int        # size of the last batch
    memory_gb: float


def train_one_epoch(model: nn.Module, ema: ModelEMA, optimizer: torch.optim.Optimizer,
                    loader, device: torch.device, epoch: int, epochs: int, hyp: dict,
                    accumulate: int, warmup_iterations: int, epoch_lr: float, seed: int,
                    multi_scale: bool = False, plot_path: Path | None = None,
                    names: list[str] | None = None, progress: bool = True,
                    loss_scale: float = 1.0) -> EpochStats:
    """Train over ``loader`` once. The optimizer steps every ``accumulate`` batches and at the
    end of the epoch, so no gradient is carried across an epoch boundary (a checkpoint there is
    complete).

    ``model`` may be wrapped in DistributedDataParallel; ``loss_scale`` (the world size) undoes
    DDP's averaging of gradients, so they stay the sum over the global batch.
    """
    model.train()
    net = getattr(model, "module", model)  # the Darknet inside a DDP wrapper
    batches = len(loader)
    anchors, strides = net.anchors(), net.strides()
    loss_sum = torch.zeros(4, device=device)
    bar = tqdm(enumerate(loader), total=batches, disable=not progress,
               desc=f"epoch {epoch}/{epochs - 1}", leave=False)
    optimizer.zero_grad(set_to_none=True)
    targets = torch.zeros(0, 6)
    img_size = 0
    for i, (images, targets, _paths, _shapes) in bar:
        iteration = i + batches * epoch
        images = to_model_input(images, device)
        targets = targets.to(device)
        if iteration <= warmup_iterations:
            for k, group in enumerate(optimizer.param_groups):
                lr, momentum = warmup_values(iteration, warmup_iterations, epoch_lr,
                                             is_bias=k == 2, hyp=hyp)
                group["lr"] = lr
                if "momentum" in group:
                    group["momentum"] = momentum
        if multi_scale:
            images = _rescale_batch(images, seed, epoch, i)
        if i == 0 and plot_path is not None:
            plot_batch(images, labels_to_boxes(targets.cpu(), len(images), *images.shape[2:]),
                       plot_path, names or [])
        preds = model(images)
        loss, parts = yolo_loss(preds, targets, anchors, strides, hyp)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite loss {loss.item()} at epoch {epoch}, batch {i} "
                                f"(parts box/obj/cls: {parts[:3].tolist()})")
        (loss * loss_scale).backward()
        if (i + 1) % accumulate == 0 or i + 1 == batches:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.update(net)
        loss_sum += parts
        img_size = images.shape[-1]
        if progress:
            mean = (loss_sum / (i + 1)).tolist()
            bar.set_postfix_str(f"box {mean[0]:.4f} obj {mean[1]:.4f} cls {mean[2]:.4f} "
                                f"targets {len(targets)} size {img_size}")
    return EpochStats((loss_sum / max(batches, 1)).tolist(), len(targets), img_size,
                      memory_gb(device))


def _rescale_batch(images: torch.Tensor, seed: int, epoch: int, batch: int) -> torch.Tensor:
    """Multi-scale training: resize the batch to a random multiple of 32 in 0.5x..1.5x."""
    size = images.shape[-1]
    rng = np.random.default_rng(derive_seed(seed, "multiscale", epoch, batch))
    new = int(rng.integers(max(size // 64, 1), size * 3 // 64 + 1)) * 32
    if new == size:
        return images
    return F.interpolate(images, size=(new, new), mode="bilinear", align_corners=False)


def fitness(map50: float, map_: float) -> float:
    """Model selection score for best.pt: mostly mAP@0.5:0.95, some mAP@0.5."""
    return 0.1 * map50 + 0.9 * map_ if math.isfinite(map_) else 0.0
