"""``--freeze``: layers of the model kept exactly as loaded through a training.

A frozen layer's parameters get no gradient (``requires_grad`` False) and are left out of the
optimizer (:func:`utils.engine.loop.build_optimizer`), so neither weight decay nor SGD's or
Adam's momentum can move them; the EMA copies them instead of averaging them
(:class:`utils.engine.ema.ModelEMA`'s ``copied``), since ``d * w + (1 - d) * w`` need not round
back to ``w``.

Their batch-norm layers are held in eval mode as well (:func:`hold_frozen_statistics`, after
every ``model.train()`` of the loop): a frozen backbone's running statistics come with its
weights, and are part of what it computes. Updating them while the affine weights stay fixed
would change what the frozen layers compute, step by step, and in train mode their output would
also be normalized by each batch's own statistics rather than the loaded ones. yolov5's
``--freeze`` only sets ``requires_grad`` False and leaves batch norm in train mode, so its
frozen layers' statistics keep moving (and its state dict changes); here a frozen layer's
tensors, statistics included, end the training bit for bit as they started.
"""
from __future__ import annotations

from torch import nn


def freeze_layers(model: nn.Module, layers: tuple[int, ...]) -> int:
    """Turn off the gradients of ``model.module_list[i]`` for each ``i`` in ``layers``; returns
    the number of parameters (elements) frozen."""
    count = 0
    for i in layers:
        for param in model.module_list[i].parameters():
            param.requires_grad_(False)
            count += param.numel()
    return count


def frozen_names(model: nn.Module, layers: tuple[int, ...]) -> set[str]:
    """The state-dict names (parameters and buffers) of the frozen layers."""
    prefixes = tuple(f"module_list.{i}." for i in layers)
    return {name for name in model.state_dict() if name.startswith(prefixes)} if layers \
        else set()


def hold_frozen_statistics(model: nn.Module, layers: tuple[int, ...]) -> None:
    """Put the frozen layers' batch norm in eval mode: normalized by their loaded running
    statistics, which stay as they are. Call after each ``model.train()``, which turns it
    back on."""
    for i in layers:
        for module in model.module_list[i].modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
