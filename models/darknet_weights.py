"""Darknet ``.weights`` files: a header, then for each conv layer in order the batch-norm
parameters (bias, weight, running mean, running variance) or the conv bias, then the conv weights,
all float32.

Header: major, minor, revision (int32), then images seen (int64 when major*10+minor >= 2,
else int32).

Batch norm: darknet computes ``(x - mean) / (sqrt(var) + 1e-6)``, torch ``(x - mean) /
sqrt(var + eps)`` (eps 1e-4 here, from the 2020 ultralytics code). The variance is converted on
write and on read so that a file means in darknet (and OpenCV's importer) what it means here;
read unconverted, layer 0 of a trained yolov3-tiny differed by up to 0.39.

A backbone file (``darknet53.conv.74``, ``yolov3-tiny.conv.15``: what darknet's ``partial``
command writes) holds the first N layers only. Files are recognised by their content, not their
suffix; the layer count comes from the name as darknet names them, or else from the file's size.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from utils.base.errors import WeightsError

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
_PICKLE_PROTOCOL = b"\x80"  # the legacy torch.save format starts with a pickle opcode
_CUTOFF_NAME = re.compile(r"\.conv\.(\d+)$")
DARKNET_BN_EPS = 1e-6  # added to sqrt(var) in darknet's normalize_cpu / normalize_gpu
# Below this relative error the float32 running variance reproduces darknet's divisor.
_DIVISOR_RTOL = 1e-6


@dataclass
class DarknetFile:
    """A parsed darknet weights file: its version, images seen and float32 body."""
    version: tuple[int, int, int]
    seen: int
    values: np.ndarray


def is_darknet_weights(path: str | Path) -> bool:
    """True when ``path`` looks like a darknet weights file: not a torch zip or pickle, a
    plausible version header, and a body of whole float32 values."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
        size = path.stat().st_size
    except OSError:
        return False
    if len(head) < 12 or head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTOCOL):
        return False
    major, minor, revision = np.frombuffer(head, dtype=np.int32).tolist()
    if not (0 <= major < 100 and 0 <= minor < 100 and 0 <= revision < 10000):
        return False
    header_size = 20 if major * 10 + minor >= 2 else 16
    return size >= header_size and (size - header_size) % 4 == 0


def cutoff_from_name(path: str | Path) -> int | None:
    """Darknet's name for a backbone cut: ``darknet53.conv.74`` -> 74; None for other names."""
    match = _CUTOFF_NAME.search(Path(path).name)
    return int(match.group(1)) if match else None


def read_darknet_file(path: str | Path) -> DarknetFile:
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12:
        raise WeightsError(f"{len(data)} bytes is too short for a darknet .weights header "
                           "(12 bytes of version, then the images-seen counter)", path)
    major, minor, revision = np.frombuffer(data[:12], dtype=np.int32).tolist()
    wide_seen = major * 10 + minor >= 2
    header_size = 20 if wide_seen else 16
    if len(data) < header_size:
        raise WeightsError(f"{len(data)} bytes is too short for a darknet {major}.{minor} header "
                           f"({header_size} bytes)", path)
    seen = int(np.frombuffer(data[12:header_size], dtype=np.int64 if wide_seen else np.int32)[0])
    if (len(data) - header_size) % 4:
        raise WeightsError("the body is not a whole number of float32 values: truncated or not "
                           "a darknet .weights file", path)
    values = np.frombuffer(data[header_size:], dtype=np.float32)
    return DarknetFile((major, minor, revision), seen, values)


def _conv_blocks(model: nn.Module, cutoff: int | None):
    """(layer index, conv, batch norm or None) of each conv layer before ``cutoff``."""
    for index, block in enumerate(list(model.module_list)[:cutoff]):
        if isinstance(block, nn.Sequential) and hasattr(block, "Conv2d"):
            yield index, block.Conv2d, getattr(block, "BatchNorm2d", None)


def _tensors_in_file_order(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> list[torch.Tensor]:
    if bn is not None:
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight]
    return [conv.bias, conv.weight]


def _cutoff_from_size(model: nn.Module, count: int, path: Path) -> int:
    """The layer count whose conv values fill exactly ``count`` floats."""
    total = 0
    for index, conv, bn in _conv_blocks(model, None):
        total += sum(t.numel() for t in _tensors_in_file_order(conv, bn))
        if total == count:
            return index + 1
        if total > count:
            break
    raise WeightsError(f"{count} values do not end at a layer boundary of this model: truncated,"
                       " or written for another cfg", path)


def variance_to_darknet(running_var: np.ndarray, eps: float) -> np.ndarray:
    """The darknet variance whose divisor ``sqrt(v) + 1e-6`` is torch's ``sqrt(var + eps)``.
    Always defined: sqrt(var + eps) >= sqrt(eps) > 1e-6 for a variance >= 0."""
    divisor = np.sqrt(running_var.astype(np.float64) + eps)
    return ((divisor - DARKNET_BN_EPS) ** 2).astype(np.float32)


def batch_norm_from_darknet(weight: np.ndarray, variance: np.ndarray, eps: float
                            ) -> tuple[np.ndarray, np.ndarray, int]:
    """(gamma, running_var, channels adjusted) so that torch's ``gamma / sqrt(var + eps)``
    equals darknet's ``gamma / (sqrt(variance) + 1e-6)``.

    Usually running_var = (sqrt(variance) + 1e-6)^2 - eps, possibly negative (a variance below
    eps), which batch norm's eval formula takes as it is. A variance so small (below about 1e-7)
    that float32 cannot hold that difference to 1e-6 gets running_var 0 and its ratio folded
    into gamma instead, the same function; those channels are counted."""
    divisor = np.sqrt(variance.astype(np.float64)) + DARKNET_BN_EPS
    running_var = (divisor ** 2 - eps).astype(np.float32)
    # What torch will compute: the float32 sum, then its square root.
    actual = np.sqrt((running_var + np.float32(eps)).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        bad = ~(np.abs(actual / divisor - 1) <= _DIVISOR_RTOL)
    gamma = weight.astype(np.float64).copy()
    gamma[bad] *= np.sqrt(eps) / divisor[bad]
    running_var[bad] = 0
    return gamma.astype(np.float32), running_var, int(bad.sum())


@dataclass
class LoadReport:
    """What :func:`load_darknet_weights` loaded: layers ``0..layers-1`` (``convs`` of them
    convolutions); the model has ``total_layers``."""
    seen: int
    layers: int
    convs: int
    total_layers: int
    folded: int = 0  # batch-norm channels whose tiny variance went into gamma

    def summary(self, path: str | Path) -> str:
        rest = (f"; layers {self.layers}..{self.total_layers - 1} keep their initialisation"
                if self.layers < self.total_layers else "")
        folded = (f"; {self.folded} batch-norm channels with a variance below 1e-7 hold "
                  "darknet's divisor in their scale" if self.folded else "")
        return (f"loaded layers 0..{self.layers - 1} ({self.convs} convolutions) from "
                f"{Path(path).name}{rest}{folded}")


def load_darknet_weights(model: nn.Module, path: str | Path, cutoff: int | None = None
                         ) -> LoadReport:
    """Load ``path`` into ``model``: the first ``cutoff`` layers if given, else as many as the
    file's name says (``*.conv.N``), else the whole model, or as many layers as the file holds
    when it is shorter and ends at a layer boundary (a backbone under another name).

    Raises WeightsError when the file does not fit: too short for the layers asked for, values
    left over (unless ``cutoff`` was given: darknet's own partial load reads a prefix), or not a
    darknet file at all.
    """
    path = Path(path)
    prefix_only = cutoff is not None
    parsed = read_darknet_file(path)
    values = parsed.values
    total_layers = len(model.module_list)
    if cutoff is None:
        cutoff = cutoff_from_name(path)
    if cutoff is None:
        needed = sum(t.numel() for _, conv, bn in _conv_blocks(model, None)
                     for t in _tensors_in_file_order(conv, bn))
        cutoff = _cutoff_from_size(model, len(values), path) if len(values) < needed else None
    if cutoff is not None and not 0 < cutoff <= total_layers:
        raise WeightsError(f"cut at layer {cutoff}, but the model has layers 0..{total_layers - 1}",
                           path)
    offset = convs = folded = 0
    with torch.no_grad():
        for _, conv, bn in _conv_blocks(model, cutoff):
            for tensor in _tensors_in_file_order(conv, bn):
                n = tensor.numel()
                if offset + n > len(values):
                    raise WeightsError(
                        f"file ends after {offset} values but the model needs more "
                        f"(truncated, or written for another cfg)", path)
                tensor.copy_(torch.from_numpy(values[offset:offset + n].copy()).view_as(tensor))
                offset += n
            if bn is not None:
                gamma, var, count = batch_norm_from_darknet(
                    bn.weight.detach().numpy(), bn.running_var.numpy(), bn.eps)
                bn.weight.copy_(torch.from_numpy(gamma))
                bn.running_var.copy_(torch.from_numpy(var))
                folded += count
            convs += 1
    if offset != len(values) and not prefix_only:
        raise WeightsError(f"{len(values) - offset} values left over after loading all "
                           f"{offset}: the file was written for another cfg", path)
    return LoadReport(parsed.seen, cutoff or total_layers, convs, total_layers, folded)


def save_darknet_weights(model: nn.Module, path: str | Path, seen: int = 0,
                         cutoff: int | None = None) -> None:
    """Write ``model`` (its first ``cutoff`` layers, if given) in darknet format: version 0.2.0
    with an int64 images-seen counter, as darknet's own ``save_weights_upto`` writes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.array([0, 2, 0], dtype=np.int32).tofile(f)
        np.array([seen], dtype=np.int64).tofile(f)
        for _, conv, bn in _conv_blocks(model, cutoff):
            for tensor in _tensors_in_file_order(conv, bn):
                values = tensor.detach().cpu().float().numpy()
                if bn is not None and tensor is bn.running_var:
                    values = variance_to_darknet(values, bn.eps)
                values.tofile(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
