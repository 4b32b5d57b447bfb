"""Choosing the device and describing it."""
from __future__ import annotations

import argparse
import platform

import torch

from utils.base.errors import InputError

DEVICE_HELP = "cpu, a GPU index (0), or empty for the first GPU if there is one, else the CPU"


def add_device_argument(parser: argparse.ArgumentParser, default: str = "",
                        help: str = DEVICE_HELP) -> None:
    """``--device``, as train.py, test.py, detect.py and the tools declare it; read with
    :func:`select_device`."""
    parser.add_argument("--device", default=default, help=help)


def select_device(spec: str = "") -> torch.device:
    """``""``: the first GPU when there is one, else the CPU; ``"cpu"``; or a GPU index ``"0"``."""
    spec = spec.strip().lower().replace("cuda:", "")
    if spec in ("", "cuda"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.isdigit():
        if not torch.cuda.is_available():
            raise InputError(f"--device {spec}: no CUDA GPU is available (use --device cpu)")
        if int(spec) >= torch.cuda.device_count():
            raise InputError(f"--device {spec}: only {torch.cuda.device_count()} GPUs "
                             f"(0..{torch.cuda.device_count() - 1})")
        return torch.device(f"cuda:{spec}")
    raise InputError(f"--device {spec!r} is not a device, expected 'cpu', a GPU index such as "
                     "'0', or empty for automatic")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def memory_gb(device: torch.device) -> float:
    """Peak memory of this process on ``device`` in GB: GPU memory reserved, or the CPU process's
    peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_reserved(device) / 1e9
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
