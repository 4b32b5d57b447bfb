"""Sums whose order does not depend on the thread count.

ATen reduces a tensor to one number in one pass below its grain size (32,768 elements) and
above it in per-thread partial sums (one per thread, then added), so a large loss term's mean
rounds differently at 1, 2 or 3 threads. A reduction to several outputs is instead split over
the outputs, each summed whole by one thread. :func:`fixed_order_sum` uses that: rows of
:data:`CHUNK` elements summed each by one thread, then the row sums (and the tail) in one
serial pass, the same arithmetic at any thread count. Below one row it is ``x.sum()`` itself,
bit for bit.
"""
from __future__ import annotations

import torch

# Below ATen's grain size: a single row is summed serially, and so is every tensor of fewer
# than CHUNK elements (the same bits as x.sum()).
CHUNK = 16_384


def fixed_order_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of every element of ``x`` (any shape) as a 0-dim tensor, in an order fixed by
    ``x.numel()`` alone. Differentiable (its gradient is a broadcast, order-free)."""
    flat = x.reshape(-1)
    n = flat.numel()
    rows = n // CHUNK
    if rows == 0:
        return flat.sum()
    partials = flat[:rows * CHUNK].view(rows, CHUNK).sum(1)
    if rows * CHUNK < n:
        partials = torch.cat((partials, flat[rows * CHUNK:].sum().view(1)))
    # At most n / CHUNK + 1 partials: below the grain size up to 500 million elements.
    return fixed_order_sum(partials) if partials.numel() >= CHUNK else partials.sum()


def fixed_order_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean()`` through :func:`fixed_order_sum` (the same bits as ``x.mean()`` below
    :data:`CHUNK` elements)."""
    if x.numel() < CHUNK:
        return x.mean()
    return fixed_order_sum(x) / x.numel()
