"""What picks the kernels on this machine: the processor and its instruction sets, the kernel
libraries and their versions, the thread count, the variables that steer them, and the GPU.

PyTorch promises the same bits only on the same platform; oneDNN only on the same CPU at the
same thread count, with kernels that may read the cache sizes. So a run records all of these,
and two runs that part can be told apart by them (``tools.drift``, ``tools.golden``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

# Instruction sets whose presence changes which kernel a library runs.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
# Variables that steer kernel choice or threading, read at library start.
KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR",
                    "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_info(cpuinfo: str | None = None) -> dict:
    """Vendor, model name, family/model/stepping and the kernel-relevant flags of the first
    processor in /proc/cpuinfo (``cpuinfo``: its text, for tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor only
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"vendor": fields.get("vendor_id"), "model_name": fields.get("model name"),
            "family": fields.get("cpu family"), "model": fields.get("model"),
            "stepping": fields.get("stepping"),
            "flags": [f for f in KERNEL_FLAGS if f in flags]}


def cache_sizes(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> dict[str, str]:
    """L1d, L2, L3 sizes of CPU 0 as the kernel reports them ("48K", "2048K", ...)."""
    sizes = {}
    for index in sorted(root.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind != "Instruction":
            sizes[f"L{level}{'d' if level == '1' else ''}"] = size
    return sizes


def _config_version(pattern: str) -> str | None:
    match = re.search(pattern, torch.__config__.show())
    return match.group(1) if match else None


def kernel_libraries() -> dict:
    """torch's CPU capability (the ATen kernels it dispatches), oneDNN's use and version, MKL's
    version, and the OpenMP thread count."""
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn_enabled": bool(torch.backends.mkldnn.enabled
                                   and torch.backends.mkldnn.is_available()),
            "onednn_version": _config_version(r"MKL-DNN v([\w.]+)"),
            "mkl_version": _config_version(r"Math Kernel Library Version ([\w.]+)"),
            "mkl_available": torch.backends.mkl.is_available(),
            "openmp_threads": torch.get_num_threads()}


def kernel_variables(environ=os.environ) -> dict[str, str | None]:
    return {name: environ.get(name) for name in KERNEL_VARIABLES}


def gpu_info(device: torch.device) -> dict:
    """Name, compute capability, multiprocessors, driver, CUDA, cuDNN and NCCL versions."""
    props = torch.cuda.get_device_properties(device)
    driver = None
    try:
        driver = torch._C._cuda_getDriverVersion()  # e.g. 13000 for CUDA 13.0's driver API
    except (AttributeError, RuntimeError):
        pass
    try:
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    except (AttributeError, RuntimeError):
        nccl = None
    return {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count, "driver_api": driver,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
            else None, "nccl": nccl}


def machine(device: torch.device) -> dict:
    """Everything above for a run on ``device``."""
    record = {"cpu": {**cpu_info(), "caches": cache_sizes()}, "kernels": kernel_libraries(),
              "variables": kernel_variables()}
    if device.type == "cuda":
        record["gpu"] = gpu_info(device)
    return record


def machine_key(record: dict, versions: dict | None = None) -> str:
    """One line naming everything that can pick a kernel. On the CPU: vendor,
    family/model/stepping, the kernel flags, the cache sizes and the thread count (the model
    name alone is often a virtual machine's generic "Intel(R) Xeon(R) Processor"). For a GPU
    run (``record`` has "gpu"): what decides a GPU's bits, not the host's CPU: the GPU's name
    and compute capability, and the torch (from ``versions``), CUDA and cuDNN versions, whose
    kernels and heuristics pick the algorithms."""
    if "gpu" in record:
        return gpu_key(record["gpu"], (versions or {}).get("torch"))
    cpu, kernels = record["cpu"], record["kernels"]
    caches = ",".join(f"{k}={v}" for k, v in sorted(cpu.get("caches", {}).items()))
    parts = [cpu.get("vendor"), f"{cpu.get('family')}/{cpu.get('model')}/{cpu.get('stepping')}",
             "+".join(cpu.get("flags", [])), caches, f"threads={kernels.get('openmp_threads')}"]
    return " | ".join(str(p) for p in parts)


def gpu_key(gpu: dict, torch_version: str | None) -> str:
    """``NAME | sm_X.Y | torch V | CUDA V | cuDNN V``: the first two name the GPU, the rest
    its software (:func:`gpu_software`)."""
    return " | ".join([gpu.get("name") or "?", f"sm_{gpu.get('compute_capability')}",
                       *(f"{k} {v}" for k, v in gpu_software(gpu, torch_version).items())])


def gpu_software(gpu: dict, torch_version: str | None) -> dict:
    """The software versions that pick a GPU's kernels, by name."""
    return {"torch": torch_version, "CUDA": gpu.get("cuda"), "cuDNN": gpu.get("cudnn")}
