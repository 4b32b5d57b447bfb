import random

import numpy as np
import torch
from torch import nn

from models.layers import RepeatUpsample
from utils.base.repro import (
    anchor_generator,
    configure_determinism,
    derive_seed,
    epoch_permutation,
    get_rng_state,
    sample_rng,
    seed_everything,
    set_rng_state,
    state_fingerprint,
)


def test_seed_everything_zero_is_deterministic():
    seed_everything(0)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(0)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    seed_everything(1)
    assert torch.rand(1).item() != a[2]


def test_derived_streams_depend_on_every_key():
    assert derive_seed(0, "a", 1) == derive_seed(0, "a", 1)
    assert len({derive_seed(0, "a", 1), derive_seed(1, "a", 1), derive_seed(0, "a", 2)}) == 3
    assert sample_rng(0, 1, 5).random() == sample_rng(0, 1, 5).random()
    assert sample_rng(0, 1, 5).random() != sample_rng(0, 2, 5).random()
    assert epoch_permutation(0, 3, 10) == epoch_permutation(0, 3, 10)
    assert epoch_permutation(0, 3, 10) != epoch_permutation(0, 4, 10)
    assert sorted(epoch_permutation(0, 3, 10)) == list(range(10))


def test_the_anchor_fit_draws_from_its_seed_alone():
    """autoanchor's generator: the same draws for a seed, other draws for another seed, apart
    from the augmentation streams, and no global generator touched."""
    np.random.seed(7)
    global_state = np.random.get_state()[1].copy()
    draws = anchor_generator(0).random(4)
    assert np.array_equal(draws, anchor_generator(0).random(4))
    assert not np.array_equal(draws, anchor_generator(1).random(4))
    assert not np.array_equal(draws, sample_rng(0, 0, 0).random(4))
    assert np.array_equal(np.random.get_state()[1], global_state)


def test_rng_state_round_trip():
    seed_everything(5)
    state = get_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(2).tolist())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(2).tolist()) == a


def test_fingerprint_sees_one_bit():
    model = nn.Linear(3, 2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = state_fingerprint(state)
    assert len(before) == 16 and before == state_fingerprint(state)
    bits = state["weight"].view(torch.int32)
    bits[0, 0] ^= 1  # flip the lowest mantissa bit
    assert state_fingerprint(state) != before


def _upsample_pair(scale):
    torch.manual_seed(scale)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float32)
    g = torch.randn(2, 3, 5 * scale, 7 * scale)
    return x, g


def test_repeat_upsample_forward_is_bit_identical_to_nearest():
    for scale in (2, 4):
        x, _ = _upsample_pair(scale)
        assert torch.equal(RepeatUpsample(scale)(x), nn.Upsample(scale_factor=scale)(x))


def test_repeat_upsample_backward_agrees_up_to_rounding_and_repeats_exactly():
    for scale in (2, 4):
        x, g = _upsample_pair(scale)
        grads = []
        modules = (RepeatUpsample(scale), nn.Upsample(scale_factor=scale), RepeatUpsample(scale))
        for module in modules:
            xi = x.clone().requires_grad_(True)
            module(xi).backward(g)
            grads.append(xi.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=2e-6)
        assert torch.equal(grads[0], grads[2])  # the same bits on every call


def _step_grads(fill: bool) -> list[torch.Tensor]:
    """One deterministic forward and backward of yolov3-tiny at 64 px (every layer kind of the
    default model), the NaN fill of new tensors on or off."""
    from models import Darknet
    configure_determinism(True, threads=2)
    torch.utils.deterministic.fill_uninitialized_memory = fill
    torch.manual_seed(0)
    model = Darknet("cfg/yolov3-tiny.cfg", num_classes=3, upsample="deterministic")
    model.to(memory_format=torch.channels_last).train()
    x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    sum(p.float().square().mean() for p in model(x)).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_repro_skips_the_nan_fill_and_its_bits_do_not_need_it():
    try:
        with_fill = _step_grads(fill=True)
        configure_determinism(True)
        assert torch.utils.deterministic.fill_uninitialized_memory is False
        without = _step_grads(fill=False)
    finally:
        configure_determinism(False)
        torch.utils.deterministic.fill_uninitialized_memory = True
    assert all(torch.equal(a, b) for a, b in zip(with_fill, without))


_MKL_THREADS = """
import ctypes, os, torch
from utils.base.repro import configure_determinism
configure_determinism(True, threads=2, portable=True)
torch.randn(1 << 20).sum()  # a parallel loop after the setting: it must not undo it
lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
print(torch.get_num_threads(), lib.MKL_Get_Max_Threads())
"""


def test_portable_runs_mkls_gemms_on_one_thread_and_torchs_loops_on_all():
    """MKL's COMPATIBLE branch sums a GEMM in another order at each thread count; torch resets
    a thread's MKL count at its first parallel loop, which undid the setting in training."""
    import subprocess
    import sys

    from tests.helpers import ROOT
    done = subprocess.run([sys.executable, "-c", _MKL_THREADS], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["2", "1"]
