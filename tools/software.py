"""The interpreter and the versions of every package the experiment runs on, for the first lines
of ``tools.gpu_check``: on a machine set up by someone else, a missing package or another
version is the first thing to know, and it must show even when a later import fails. This
module imports only the standard library at load; each package is imported in its own try.
"""
from __future__ import annotations

import importlib
import platform
import sys

# (what to call it, the module to import), in the order printed.
PACKAGES = (("torch", "torch"), ("torchvision", "torchvision"), ("numpy", "numpy"),
            ("opencv", "cv2"), ("scipy", "scipy"), ("yaml", "yaml"), ("matplotlib", "matplotlib"),
            ("tqdm", "tqdm"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
            ("pytest", "pytest"))

_found: dict = {}
_printed = False


def software_versions() -> dict:
    """``executable``, ``python`` and each of :data:`PACKAGES` (its version, or None when it
    cannot be imported, with the reason under ``missing``), then torch's CUDA, cuDNN and NCCL
    versions and the GPU it sees. Read once per process."""
    if _found:
        return dict(_found)
    info: dict = {"executable": sys.executable, "python": platform.python_version()}
    missing = {}
    for name, module in PACKAGES:
        try:
            info[name] = str(getattr(importlib.import_module(module), "__version__", "?"))
        except Exception as err:  # not installed, or broken: say which, never stop here
            info[name], missing[name] = None, f"{type(err).__name__}: {err}"
    if info["torch"] is not None:
        info.update(_torch_details())
    if missing:
        info["missing"] = missing
    _found.update(info)
    return dict(info)


def _torch_details() -> dict:
    import torch
    details = {"cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
               else None, "nccl": None, "gpu": None}
    try:
        details["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception:  # a CPU build, or no NCCL in it
        pass
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        details["gpu"] = f"{torch.cuda.get_device_name(0)} (sm_{major}.{minor}), " \
                         f"{torch.cuda.device_count()} visible"
    return details


def format_software(info: dict) -> str:
    lines = [f"python {info['python']}: {info['executable']}"]
    for name, _ in PACKAGES:
        version = info.get(name)
        lines.append(f"{name} {version}" if version else
                     f"{name}: not importable ({info.get('missing', {}).get(name, '?')})")
    if info.get("torch"):
        lines.append(f"torch's CUDA {info.get('cuda')}, cuDNN {info.get('cudnn')}, "
                     f"NCCL {info.get('nccl')}; GPU: {info.get('gpu') or 'none visible'}")
    return "\n".join(lines)


def print_software() -> None:
    """Print the versions once per process (the second call prints nothing)."""
    global _printed
    if not _printed:
        _printed = True
        print(format_software(software_versions()), flush=True)
