"""Learning-rate and momentum schedule: linear warm-up, then cosine decay to ``lrf * lr0``."""
from __future__ import annotations

import math

import numpy as np


def cosine_factor(epoch: int, epochs: int, lrf: float) -> float:
    """Multiplier of lr0 for ``epoch`` (0-based) of ``epochs``: 1 at the start, falling to
    ``lrf``."""
    return ((1 + math.cos(epoch * math.pi / epochs)) / 2) * (1 - lrf) + lrf


def warmup_values(iteration: int, warmup_iterations: int, epoch_lr: float, is_bias: bool,
                  hyp: dict) -> tuple[float, float]:
    """(lr, momentum) of a parameter group during warm-up.

    Biases start high (``warmup_bias_lr``) and fall to the epoch's lr; the rest rise from 0.
    Momentum rises from ``warmup_momentum`` to ``momentum``.
    """
    points = [0, warmup_iterations]
    start = hyp["warmup_bias_lr"] if is_bias else 0.0
    lr = float(np.interp(iteration, points, [start, epoch_lr]))
    momentum = float(np.interp(iteration, points, [hyp["warmup_momentum"], hyp["momentum"]]))
    return lr, momentum
