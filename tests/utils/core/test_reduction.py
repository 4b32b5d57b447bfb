"""Sums whose order no thread count changes (utils/core/reduction.py)."""
from __future__ import annotations

import subprocess
import sys

import torch

from tests.helpers import ROOT
from utils.core.reduction import CHUNK, fixed_order_mean, fixed_order_sum

# Each size's fixed-order and torch sums, as hex floats, at the thread count given.
_SUMS = f"""
import sys, torch
from utils.core.reduction import fixed_order_sum
torch.set_num_threads(int(sys.argv[1]))
g = torch.Generator().manual_seed(0)
for n in (100, {CHUNK}, 3 * {CHUNK} + 7, 1_000_003):
    x = torch.randn(n, generator=g)
    print(fixed_order_sum(x).item().hex(), x.sum().item().hex())
"""


def _sums(threads: int) -> list[tuple[str, str]]:
    done = subprocess.run([sys.executable, "-c", _SUMS, str(threads)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return [tuple(line.split()) for line in done.stdout.splitlines()]


def test_fixed_order_sum_is_the_same_at_any_thread_count_and_torch_sum_is_not():
    by_threads = {t: _sums(t) for t in (1, 2, 3)}
    fixed = {t: [f for f, _ in sums] for t, sums in by_threads.items()}
    torch_sums = {t: [s for _, s in sums] for t, sums in by_threads.items()}
    assert fixed[1] == fixed[2] == fixed[3]
    # What the fixed order is for: above the grain size ATen keeps a partial sum per thread.
    assert torch_sums[1][-1] != torch_sums[2][-1] or torch_sums[1][-1] != torch_sums[3][-1]
    # Below one row the fixed-order sum is torch's own, bit for bit.
    assert fixed[1][0] == torch_sums[1][0]


def test_fixed_order_sum_and_mean_are_sums():
    g = torch.Generator().manual_seed(1)
    for n in (1, CHUNK - 1, CHUNK, 2 * CHUNK + 5, 40 * CHUNK):
        x = torch.randn(3, n, generator=g)
        exact = x.double().sum().item()
        assert abs(fixed_order_sum(x).item() - exact) <= 1e-5 * x.abs().sum().item()
        assert abs(fixed_order_mean(x).item() - exact / x.numel()) <= 1e-5 * x.abs().mean()
    small = torch.randn(CHUNK - 1, generator=g)
    assert fixed_order_mean(small).item() == small.mean().item()


def test_fixed_order_mean_has_the_gradient_of_a_mean():
    x = torch.randn(2 * CHUNK + 3, requires_grad=True)
    fixed_order_mean(x).backward()
    assert torch.equal(x.grad, torch.full_like(x, 1 / x.numel()))
