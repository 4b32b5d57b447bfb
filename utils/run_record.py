"""What a run records about itself: its folder, options, environment and input digests."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from utils.device import device_name


def next_run_dir(project: str | Path, name: str) -> Path:
    """``project/name``, or ``name2``, ``name3``, ... when taken: a run never overwrites another."""
    project = Path(project)
    project.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100000):
        candidate = project / (name if n == 1 else f"{name}{n}")
        try:
            candidate.mkdir()  # atomic: two runs starting together cannot get the same folder
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder under {project}")


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def files_digest(paths: list[Path]) -> str:
    """One SHA-256 over the names (relative to their common folder) and bytes of ``paths``."""
    digest = hashlib.sha256()
    root = Path(os.path.commonpath([str(p) for p in paths])) if paths else Path(".")
    for p in sorted(paths):
        digest.update(str(p.relative_to(root) if p != root else p.name).encode() + b"\0")
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def environment(device: torch.device) -> dict:
    """Versions, platform and device: the things that change bits between machines."""
    import cv2
    import numpy
    import torchvision
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
