"""Keep freed host memory in the process, so a training step reuses it instead of faulting in
fresh pages every batch.

glibc's malloc serves each block above its mmap threshold (128 KiB at start, rising with use to
at most 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` when freed, and it trims
the top of its heap back to the system whenever enough is free there. A training step frees and
allocates the same few hundred megabytes of activations and gradients every batch, so every
batch the kernel maps, faults in and zeroes those pages again. Measured on 2 cores of an AMD
EPYC (docs/speed.md): about 1.2 million page faults and 3 s of system time in 30 `--repro`
steps of yolov3-tiny at 224 px; with the settings below 0.15 million and 0.3 s, 1.2-1.3x the
images a second. Intel's PyTorch tuning guide gets the same effect from jemalloc or tcmalloc;
these two ``mallopt`` settings need nothing installed.

No bit of a result depends on this: every kernel writes the whole output it allocates (tested
on a --repro training, fingerprints equal with and without). The cost is memory: what was
once in use stays mapped until the process ends (a run's peak resident memory, about 25% above
the default allocator's at 416 px, batch 16).
"""
from __future__ import annotations

import ctypes
import os
import platform

# mallopt's parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# The largest trim threshold mallopt takes (its value is a C int): free memory above this at
# the top of the heap still goes back to the system.
TRIM_THRESHOLD = 2**31 - 1

# What a user sets to choose the allocator's behaviour; seen, their choice stands.
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                 "MALLOC_TOP_PAD_", "LD_PRELOAD")

_state: str | None = None


def _user_setting(environ) -> str | None:
    for name in USER_SETTINGS:
        if environ.get(name):
            return f"{name}={environ[name]}"
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return f"GLIBC_TUNABLES={environ['GLIBC_TUNABLES']}"
    return None


def retain_freed_memory(environ=os.environ) -> str:
    """Ask glibc's malloc to serve every block from its heap (no ``mmap``) and never to trim
    the heap below 2 GiB of free memory; once per process. Returns what holds, for repro.yaml:
    the settings made, or why none was (not glibc, or the user chose: a ``MALLOC_*`` variable,
    ``GLIBC_TUNABLES`` or ``LD_PRELOAD`` in the environment)."""
    global _state
    if _state is not None:
        return _state
    user = _user_setting(environ)
    if user:
        _state = f"as the environment chose ({user})"
    elif platform.libc_ver()[0] != "glibc":
        _state = "the platform's allocator, unchanged (not glibc)"
    else:
        libc = ctypes.CDLL(None)
        done = libc.mallopt(M_MMAP_MAX, 0) == 1 and \
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        _state = ("glibc malloc: no mmap, heap trimmed above 2 GiB free" if done
                  else "glibc malloc, unchanged (mallopt refused)")
    return _state


def allocator_state() -> str:
    """What :func:`retain_freed_memory` did in this process (recorded in repro.yaml)."""
    return _state or "the platform's allocator, unchanged"
