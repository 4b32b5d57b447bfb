"""The one module that owns randomness and determinism.

Every random draw that shapes a training comes from here:
- weight init from torch's CPU generator, seeded by :func:`seed_everything`;
- the order of the samples from :func:`epoch_permutation` (seed, epoch), or under
  ``--image-weights`` from :func:`epoch_weighted_draw` (seed, epoch);
- each sample's augmentation from :func:`sample_rng` (seed, epoch, sample index).
Statistics draw too: the bootstrap's resamples of the images come from :func:`resample_rng`;
a new run's anchors fitted to its labels (autoanchor) from :func:`anchor_generator`; a
hyperparameter search's mutations (tools.evolve) from :func:`evolve_rng` (seed, generation).
Draws derived from (seed, epoch, index) do not depend on the DataLoader's worker count or on the
point where a run was resumed, which per-worker streams would.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import random
from typing import Any

import numpy as np
import torch

# cuBLAS's documented setting for reproducible results; read when cuBLAS starts. (torch 2.11
# and 2.14 no longer refuse deterministic mm/bmm without it, but cuBLAS still reads it.)
CUBLAS_WORKSPACE = ":4096:8"


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from ``seed`` and ``keys``, stable across machines and Python versions."""
    text = ":".join(str(k) for k in (seed, *keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's legacy global generator and torch (CPU and every CUDA
    device). Every seed, 0 included, gives a deterministic run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one sample's augmentation in one epoch."""
    return np.random.default_rng([seed % 2**63, epoch, index])


def resample_rng(seed: int, purpose: str) -> np.random.Generator:
    """The generator for a statistic's resampling (``purpose`` names it, so two statistics
    under one seed draw apart), independent of any training's streams."""
    return np.random.default_rng(derive_seed(seed, "resample", purpose))


def anchor_generator(seed: int) -> np.random.Generator:
    """The generator of a run's anchor fit (k-means starts and genetic mutations): from the
    run's seed alone, apart from every training stream, so a --repro run fits the same anchors
    each time and the fit moves no other draw."""
    return np.random.default_rng(derive_seed(seed, "anchors"))


def evolve_rng(seed: int, generation: int) -> np.random.Generator:
    """The generator of one generation's mutation in a hyperparameter search (tools.evolve):
    from (seed, generation) alone, so a search resumed at generation g draws what an
    uninterrupted one drew there, apart from every training stream."""
    return np.random.default_rng(derive_seed(seed, "evolve", generation))


def epoch_permutation(seed: int, epoch: int, n: int) -> list[int]:
    """The shuffled order of ``n`` samples for ``epoch``, drawn on a CPU generator."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch))
    return torch.randperm(n, generator=generator).tolist()


def epoch_weighted_draw(seed: int, epoch: int, weights) -> list[int]:
    """``--image-weights``' order for ``epoch``: ``len(weights)`` sample indices drawn with
    replacement, each in proportion to its weight, on a CPU generator of (seed, epoch) as
    :func:`epoch_permutation`'s (apart from it: another purpose in the seed)."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "image_weights", epoch))
    weights = torch.as_tensor(weights, dtype=torch.float64)
    return torch.multinomial(weights, len(weights), replacement=True,
                             generator=generator).tolist()


# --portable: what keeps a CPU run's bits the same on any x86-64 CPU with AVX2, Intel or AMD, with
# the thread-count settings below (measured choices in docs/drift.md). Read when the libraries
# start, so they are set by the restart (utils/engine/restart.py), overriding whatever the user's
# environment claims. ATen's own kernels are pinned to their AVX2 build; convolutions leave oneDNN
# (whose kernels follow the CPU's instruction set and cache sizes: other bits at AVX2 and SSE4.1
# caps on one machine) for ATen's im2col + MKL GEMM under MKL's conditional numerical
# reproducibility mode (CNR) at its COMPATIBLE branch: SSE2 without the approximation instructions,
# the one branch MKL honours on Intel and non-Intel CPUs alike. Its AVX2 branch is Intel-only: on
# an AMD EPYC MKL silently ran its AUTO branch instead, and an Intel Xeon at AVX2 got other bits
# from the first convolution (docs/drift.md). oneDNN is capped too, for any operator that still
# reaches it.
PORTABLE_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE",
                        "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                        "DNNL_MAX_CPU_ISA": "AVX2"}


# --portable's bits at any thread count too (docs/threads.md): NCHW, MKL's GEMMs on one thread
# (single_threaded_blas) and fixed-order loss sums (utils.core.reduction). The recipe's number
# is recorded (opt.yaml, the golden records): 1 was the same bits at one thread count only.
PORTABLE_RECIPE = 2
# Batch norm in channels-last keeps one partial sum per thread; in NCHW each channel is summed
# whole by one thread.
PORTABLE_MEMORY_FORMAT = torch.contiguous_format


def single_threaded_blas() -> None:
    """MKL's GEMMs on one thread for this (calling) thread, whatever torch's thread count.

    MKL splits a GEMM over its threads and, at its COMPATIBLE branch, sums in another order
    for each count (strict CNR, which would not, is Intel-only at AVX2 and above). Torch's own
    parallel loops call their GEMMs inside a parallel region, where MKL runs one thread anyway
    (the convolution's forward pass and input gradient, one image per thread); what this
    changes is the GEMMs torch calls outside one: the weight gradient's, summed image by
    image in order. ``mkl_set_num_threads_local`` outranks the global count that
    ``torch.set_num_threads`` sets; the autograd engine runs a CPU backward pass on the
    thread that called it, so this thread's setting covers training. Raises RuntimeError when
    torch has no MKL to set (a build without it: no thread-count promise)."""
    library = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        # MKL_Set_Num_Threads_Local takes its count by value (the lowercase C name is the
        # Fortran-style entry point, which takes a pointer).
        set_local = ctypes.CDLL(library).MKL_Set_Num_Threads_Local
    except (OSError, AttributeError) as err:
        raise RuntimeError(f"torch's MKL thread setting not found in {library} ({err})") from None
    set_local.argtypes, set_local.restype = [ctypes.c_int], ctypes.c_int
    # Torch sets every thread's MKL count again at the thread's first parallel loop (its lazy
    # start of the thread pool): run one first, or the setting below is undone by it.
    torch.ones(1 << 17).sum()
    set_local(1)


def configure_determinism(deterministic: bool, threads: int | None = None,
                          portable: bool = False) -> None:
    """Set torch's global switches for a reproducible (or a fast) run.

    Deterministic: strict ``use_deterministic_algorithms``, cuDNN deterministic and not
    benchmarking, TF32 off for convolutions and matmuls. Otherwise cuDNN may benchmark and pick
    the fastest (possibly nondeterministic) kernels. ``portable``: CPU convolutions through
    ATen and MKL rather than oneDNN (with :data:`PORTABLE_ENVIRONMENT` set at start), MKL's
    GEMMs on one thread (:func:`single_threaded_blas`).
    """
    torch.backends.mkldnn.enabled = not portable
    if threads is not None:
        torch.set_num_threads(threads)
    if portable:  # after set_num_threads, which sets MKL's count too
        single_threaded_blas()
    # The first call imports the inductor config (about 3 s): skip it when there is nothing
    # to turn off.
    if deterministic or torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(deterministic)
        # Under deterministic mode torch fills every new tensor with NaN by default, so that a
        # kernel reading memory it never wrote would give the same (NaN) answer each run. No
        # kernel of this trainer does (a --repro run gave the same fingerprints with and
        # without the fill, docs/speed.md), and the fill wrote about 700 tensors a step.
        torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = False
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def get_rng_state() -> dict[str, Any]:
    """Every global generator's state, for an exact resume."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


def state_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """First 16 hex digits of the SHA-256 of a state dict: names, dtypes, shapes and bytes, in
    the state dict's own (fixed, model-defined) key order."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
