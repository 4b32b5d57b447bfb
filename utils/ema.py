"""Exponential moving average of a model's weights, kept apart from the raw weights."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """``ema = d * ema + (1 - d) * model`` after each optimizer step, with ``d`` ramping up from 0
    to ``decay`` over the first few thousand updates, so early epochs are not dominated by the
    random init. Floating point buffers (BN statistics) are averaged too; integer ones copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, ramp: float = 2000.0,
                 updates: int = 0):
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        self.ramp = ramp
        self.updates = updates
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)
            else:
                value.copy_(source[name])

    def state_dict(self) -> dict:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = state["updates"]
