"""The same bits at any number of processes (a prototype; design in docs/threads.md).

DDP's all-reduce adds the processes' gradients in an order of its own, and each process's
batch norm sees its share of the batch only, so 1, 2 and 4 processes part from the first step.
Here every sum over the batch is taken per **shard**, a fixed run of ``shard_size`` images of
the global batch, and the shards' partial sums are gathered and added in shard order
(:meth:`Shards.combine`), whether the shards sit in one process or in several:

- batch norm (:class:`ShardedBatchNorm2d`): the mean, the variance and, backward, the two
  sums of its gradient, over the whole global batch as SyncBatchNorm computes them;
- every convolution's weight and bias gradient (:class:`ShardedConv2d`);
- the loss: one loss per shard (:func:`shard_losses`), so each image's gradient depends on its
  own shard alone, never on how the shards are split among processes.

Every process then holds the same gradient, bit for bit: no DDP wrapper, no all-reduce. Each
per-shard sum is one whose order no thread count changes (NCHW, MKL's GEMMs on one thread:
--portable's kernels, utils.base.repro), so the promise is --portable's, extended to processes.

Not wired into train.py yet: a prototype with a test of 1 against 2 processes on the micro
model (tests/utils/engine/test_shard_sums.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from utils.core.loss import yolo_loss


@dataclass(frozen=True)
class Shards:
    """The global batch's ``count`` shards of ``shard_size`` images; this process holds the
    ``local`` shards starting at ``first`` (processes hold equal, consecutive runs). ``group``:
    the process group (None: one process holds every shard)."""
    count: int
    shard_size: int
    first: int = 0
    local: int | None = None
    group: object = None

    @classmethod
    def of(cls, global_batch: int, shard_size: int, group=None) -> "Shards":
        count, rest = divmod(global_batch, shard_size)
        world = dist.get_world_size(group) if group is not None else 1
        if rest or count % world:
            raise ValueError(f"a global batch of {global_batch} in shards of {shard_size} "
                             f"cannot be split evenly over {world} processes")
        local = count // world
        rank = dist.get_rank(group) if group is not None else 0
        return cls(count, shard_size, rank * local, local, group)

    @property
    def images(self) -> int:
        return self.count * self.shard_size

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This process's part of the batch [local * shard_size, ...] as its shards."""
        return x.split(self.shard_size)

    def combine(self, partials: torch.Tensor) -> torch.Tensor:
        """[local, ...] partial sums of this process's shards -> [...] the sum over every
        shard of the global batch, added one shard after the other in shard order: the same
        bits whichever process computed which shard."""
        if self.group is not None:
            gathered = [torch.empty_like(partials) for _ in range(dist.get_world_size(self.group))]
            dist.all_gather(gathered, partials.contiguous(), group=self.group)
            partials = torch.cat(gathered)
        total = partials[0].clone()
        for shard in partials[1:]:
            total += shard
        return total


def _channel_sums(x: torch.Tensor, shards: Shards) -> torch.Tensor:
    """[N, C, H, W] -> [local, C]: each shard's per-channel sum. A reduction to C outputs: ATen
    sums each channel whole on one thread, in an order no thread count changes."""
    return torch.stack([s.sum((0, 2, 3)) for s in shards.split(x)])


class _BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, shards: Shards, eps: float):
        n = shards.images * x.shape[2] * x.shape[3]
        mean = shards.combine(_channel_sums(x, shards)) / n
        centred = x - mean[None, :, None, None]
        var = shards.combine(_channel_sums(centred * centred, shards)) / n
        invstd = torch.rsqrt(var + eps)
        xhat = centred * invstd[None, :, None, None]
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.shards, ctx.n = shards, n
        return xhat * weight[None, :, None, None] + bias[None, :, None, None], mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        xhat, weight, invstd = ctx.saved_tensors
        shards, n = ctx.shards, ctx.n
        grad_bias = shards.combine(_channel_sums(grad, shards))
        grad_weight = shards.combine(_channel_sums(grad * xhat, shards))
        # SyncBatchNorm's input gradient, from the global batch's two sums.
        scale = (weight * invstd)[None, :, None, None]
        grad_x = scale * (grad - grad_bias[None, :, None, None] / n
                          - xhat * grad_weight[None, :, None, None] / n)
        return grad_x, grad_weight, grad_bias, None, None


class ShardedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the whole global batch (as SyncBatchNorm), its sums per shard in shard
    order. In eval mode it is nn.BatchNorm2d; its parameters and buffers are the same."""
    shards: Shards

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        y, mean, var = _BatchNormFunction.apply(x, self.weight, self.bias, self.shards, self.eps)
        n = self.shards.images * x.shape[2] * x.shape[3]
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var * (n / (n - 1)),
                                                          alpha=self.momentum)
        return y


class _ConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, conv: nn.Conv2d):
        ctx.save_for_backward(x, weight)
        ctx.conv, ctx.has_bias = conv, bias is not None
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        conv, shards = ctx.conv, ctx.conv.shards

        def backward_of(g, inputs, mask):
            return torch.ops.aten.convolution_backward(
                g, inputs, weight, None, conv.stride, conv.padding, conv.dilation, False, [0, 0],
                conv.groups, mask)

        # The input gradient is per image: one call for the whole local batch.
        grad_x = backward_of(grad, x, [True, False, False])[0]
        weights = torch.stack([backward_of(g, s, [False, True, False])[1]
                               for g, s in zip(shards.split(grad), shards.split(x))])
        grad_weight = shards.combine(weights)
        grad_bias = shards.combine(_channel_sums(grad, shards)) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias, None


class ShardedConv2d(nn.Conv2d):
    """A convolution whose weight and bias gradients are summed per shard, in shard order."""
    shards: Shards

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        return _ConvFunction.apply(x, self.weight, self.bias, self)


def shard_model(model: nn.Module, shards: Shards) -> nn.Module:
    """Make every Conv2d and BatchNorm2d of ``model`` take its batch sums per shard, in place:
    the same parameters and buffers (the state dict is unchanged), other classes."""
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = ShardedConv2d
        elif type(module) is nn.BatchNorm2d:
            module.__class__ = ShardedBatchNorm2d
        else:
            continue
        module.shards = shards
    return model


def shard_losses(preds: list[torch.Tensor], targets: torch.Tensor, anchors, strides,
                 hyp: dict, shards: Shards, xy_scales: list[float] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to backpropagate, parts [4] over the global batch): one loss per shard of this
    process's images (``targets`` rows index them, 0..local*shard_size-1), each the YOLO loss
    of its ``shard_size`` images; parts are the shards' per-image parts averaged in shard
    order. Sums of whole shards' scalars: an image's gradient is its shard's alone."""
    losses, parts = [], []
    for k in range(shards.local):
        lo = k * shards.shard_size
        rows = (targets[:, 0] >= lo) & (targets[:, 0] < lo + shards.shard_size)
        shard_targets = targets[rows].clone()
        shard_targets[:, 0] -= lo
        loss, part = yolo_loss([p[lo:lo + shards.shard_size] for p in preds], shard_targets,
                               anchors, strides, hyp, fixed_order=True, xy_scales=xy_scales)
        losses.append(loss)
        parts.append(part)
    return torch.stack(losses).sum(), shards.combine(torch.stack(parts)) / shards.count
