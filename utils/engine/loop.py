"""The training loop: one epoch, the optimizer it steps, and the state a training carries."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from utils.base.device import memory_gb
from utils.base.repro import derive_seed
from utils.core.loss import LOSS_PARTS, yolo_loss
from utils.core.schedule import warmup_values
from utils.data.inputs import to_model_input
from utils.data.plots import labels_to_boxes, plot_batch
from utils.engine.distributed import DistInfo, epoch_over_ranks
from utils.engine.ema import ModelEMA
from utils.engine.freeze import hold_frozen_statistics
from utils.engine.plan import RunPlan
from utils.engine.precision import forward_context


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names epoch and batch."""


def build_optimizer(model: nn.Module, hyp: dict, adam: bool) -> torch.optim.Optimizer:
    """Three parameter groups: batch-norm weights (no decay), conv weights (decay), biases (no
    decay). Group order is fixed, so optimizer state maps back on resume.

    Batch norm is matched by its base class, so ``SyncBatchNorm`` (``--sync-bn``) counts too.
    The fused kernels (CPU and CUDA) update every tensor of a group in one call: on the CPU the
    default per-tensor loop took 28 ms an Adam step for yolov3-tiny, the fused one 13 ms. The
    model must be on its device before this is called. Frozen parameters (``requires_grad``
    False: ``--freeze``) are left out, so no decay or momentum can move them.
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
    bn_weights, conv_weights, biases = ([p for p in group if p.requires_grad]
                                        for group in (bn_weights, conv_weights, biases))
    first = [{"params": bn_weights}]  # as a group: torch refuses an empty list of tensors
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    if adam:
        optimizer = torch.optim.Adam(first, lr=hyp["lr0"], betas=(hyp["momentum"], 0.999),
                                     fused=fused)
    else:
        optimizer = torch.optim.SGD(first, lr=hyp["lr0"], momentum=hyp["momentum"],
                                    nesterov=True, fused=fused)
    optimizer.add_param_group({"params": conv_weights, "weight_decay": hyp["weight_decay"]})
    optimizer.add_param_group({"params": biases})
    return optimizer


@dataclass(frozen=True)
class LoopSettings:
    """What the training loop needs besides the model, optimizer, data and device.

    ``accumulate``: batches per optimizer step; ``loss_scale``: the world size under DDP (undoes
    DDP's averaging, so gradients stay the sum over the global batch); ``autocast``: a factory of
    autocast contexts for mixed precision (None: fp32); ``plot_path``: where to draw the first
    batch of epoch 0, with ``names``; ``memory_format``: the model's layout, its inputs'
    too; ``fixed_order_loss``: loss means in a thread-count-free order (--portable).
    """
    epochs: int
    hyp: dict
    accumulate: int
    warmup_iterations: int
    seed: int
    multi_scale: bool = False
    loss_scale: float = 1.0
    progress: bool = True
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None
    plot_path: Path | None = None
    names: tuple[str, ...] = ()
    frozen: tuple[int, ...] = ()  # --freeze's layers: batch norm held in eval mode
    memory_format: torch.memory_format = torch.channels_last
    fixed_order_loss: bool = False


@dataclass
class Training:
    """Everything the epoch loop works on (built whole, by keyword, by
    :func:`utils.engine.training_setup.build_training`), and what a checkpoint saves. The run's
    decisions are in the frozen ``plan``; the fields after ``run_dir`` are what changes as the
    run goes on."""
    plan: RunPlan
    dist: DistInfo
    log: Callable[..., None]
    model: nn.Module        # the Darknet, raw weights (what the fingerprint hashes)
    train_model: torch.nn.Module  # the same model, wrapped for DDP when there are processes
    ema: ModelEMA
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None  # fp16 loss scaling; None in fp32 and bf16
    lr_factor: Callable[[int], float]
    settings: LoopSettings
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    names: list[str]
    digests: dict
    run_dir: Path
    start_epoch: int = 0
    best_fitness: float = -1.0
    lines: list[str] = field(default_factory=list)
    log_state: dict = field(default_factory=dict)  # what the experiment logs keep (MLflow's id)
    stale_epochs: int = 0  # evaluated epochs since the fitness last improved (--patience)


@dataclass
class EpochStats:
    losses: dict[str, float]  # LOSS_PARTS: mean per image over the epoch
    targets: int              # targets in the last batch (as the ultralytics column)
    img_size: int             # size of the last batch
    memory_gb: float
    seconds: float = 0.0      # the loop's wall time, loading included (not in results.txt:
    images: int = 0           # two identical runs take different times)


def train_one_epoch(model: nn.Module, ema: ModelEMA, optimizer: torch.optim.Optimizer,
                    loader, device: torch.device, epoch: int, epoch_lr: float,
                    settings: LoopSettings, scaler: torch.amp.GradScaler | None = None
                    ) -> EpochStats:
    """Train over ``loader`` once. The optimizer steps every ``settings.accumulate`` batches and
    at the end of the epoch, so no gradient is carried across an epoch boundary (a checkpoint
    there is complete). ``model`` may be wrapped in DistributedDataParallel; ``scaler`` scales
    fp16 losses.
    """
    started = time.perf_counter()
    model.train()
    net = getattr(model, "module", model)  # the Darknet inside a DDP wrapper
    hold_frozen_statistics(net, settings.frozen)  # train() just turned their batch norm on
    batches = len(loader)
    heads = net.anchors(), net.strides(), net.xy_scales()
    loss_sum = torch.zeros(len(LOSS_PARTS), device=device)
    # disable=None: drawn on a terminal only; a log file gets the epoch's line, not 1,300
    # redrawn bars.
    bar = tqdm(enumerate(loader), total=batches, disable=None if settings.progress else True,
               desc=f"epoch {epoch}/{settings.epochs - 1}", leave=False)
    optimizer.zero_grad(set_to_none=True)
    targets = torch.zeros(0, 6)
    img_size, images_seen = 0, 0
    for i, (images, targets, _paths, _placements) in bar:
        iteration = i + batches * epoch
        images = to_model_input(images, device, settings.memory_format)
        targets = targets.to(device, non_blocking=True)
        if iteration <= settings.warmup_iterations:
            _warm_up(optimizer, iteration, epoch_lr, settings)
        if settings.multi_scale:
            images = _rescale_batch(images, settings.seed, epoch, i)
        if i == 0 and epoch == 0 and settings.plot_path is not None:
            plot_batch(images, labels_to_boxes(targets.cpu(), len(images), *images.shape[2:]),
                       settings.plot_path, list(settings.names))
        loss, parts = _forward_loss(model, images, targets, heads, settings)
        if not torch.isfinite(loss):
            named = dict(zip(LOSS_PARTS, parts.tolist()))
            raise NonFiniteLoss(f"non-finite loss {loss.item()} at epoch {epoch}, batch {i} "
                                f"(parts: {named})")
        loss = loss * settings.loss_scale
        (scaler.scale(loss) if scaler else loss).backward()
        if (i + 1) % settings.accumulate == 0 or i + 1 == batches:
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.update(net)
        loss_sum += parts
        img_size = images.shape[-1]
        images_seen += len(images)
        if settings.progress:
            mean = dict(zip(LOSS_PARTS, (loss_sum / (i + 1)).tolist()))
            bar.set_postfix_str(" ".join(f"{k} {v:.4f}" for k, v in mean.items())
                                + f" targets {len(targets)} size {img_size}")
    # Under DDP each process saw its share of every batch: results.txt gets the global
    # batch's losses and targets, not rank 0's share (one process: unchanged, every bit).
    loss_sum, last_targets = epoch_over_ranks(loss_sum, len(targets))
    means = (loss_sum / max(batches, 1)).tolist()  # waits for the device's last step
    return EpochStats(dict(zip(LOSS_PARTS, means)), last_targets, img_size, memory_gb(device),
                      time.perf_counter() - started, images_seen)


def _forward_loss(model, images, targets, heads, settings: LoopSettings):
    """The forward pass (under autocast when mixed precision is on) and the loss, in fp32
    (``float()`` of an fp32 tensor is the tensor itself); ``heads``: the yolo layers' anchors,
    strides and centre scales."""
    anchors, strides, xy_scales = heads
    with forward_context(settings.autocast):
        preds = model(images)
    return yolo_loss([p.float() for p in preds], targets, anchors, strides, settings.hyp,
                     label_smoothing=settings.hyp["label_smoothing"],
                     fixed_order=settings.fixed_order_loss, xy_scales=xy_scales)


def _warm_up(optimizer: torch.optim.Optimizer, iteration: int, epoch_lr: float,
             settings: LoopSettings) -> None:
    for k, group in enumerate(optimizer.param_groups):
        lr, momentum = warmup_values(iteration, settings.warmup_iterations, epoch_lr,
                                     is_bias=k == 2, hyp=settings.hyp)
        group["lr"] = lr
        if "momentum" in group:
            group["momentum"] = momentum


def _rescale_batch(images: torch.Tensor, seed: int, epoch: int, batch: int) -> torch.Tensor:
    """Multi-scale training: the batch's longer side becomes a random multiple of 32 within
    0.5x..1.5x of it, the shorter side follows at the same scale (a --rect batch keeps its
    aspect), rounded to a multiple of 32."""
    height, width = images.shape[2:]
    size = max(height, width)
    rng = np.random.default_rng(derive_seed(seed, "multiscale", epoch, batch))
    new = int(rng.integers(max(math.ceil(size / 64), 1), size * 3 // 64 + 1)) * 32
    shape = tuple(max(round(side * new / size / 32), 1) * 32 for side in (height, width))
    if shape == (height, width):
        return images
    return F.interpolate(images, size=shape, mode="bilinear", align_corners=False)


def fitness(map50: float, map_: float) -> float:
    """Model selection score for best.pt: mostly mAP@0.5:0.95, some mAP@0.5."""
    return 0.1 * map50 + 0.9 * map_ if math.isfinite(map_) else 0.0
