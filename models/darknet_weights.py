"""Darknet ``.weights`` files: a header, then for each conv layer in order the batch-norm
parameters (bias, weight, running mean, running variance) or the conv bias, then the conv weights,
all float32.

Header: major, minor, revision (int32), then images seen (int64 when major*10+minor >= 2,
else int32).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from utils.errors import WeightsError


def _conv_blocks(model: nn.Module, cutoff: int | None):
    layers = list(model.module_list)[:cutoff]
    for block in layers:
        if isinstance(block, nn.Sequential) and hasattr(block, "Conv2d"):
            yield block.Conv2d, getattr(block, "BatchNorm2d", None)


def _tensors_in_file_order(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> list[torch.Tensor]:
    if bn is not None:
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight]
    return [conv.bias, conv.weight]


def load_darknet_weights(model: nn.Module, path: str | Path, cutoff: int | None = None) -> int:
    """Load ``path`` into ``model`` (layers before ``cutoff`` only, if given).

    Returns the number of images seen stored in the header. Raises WeightsError when the file is
    too short for the model or has bytes left over (a file for another cfg).
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 16:
        raise WeightsError(f"{len(data)} bytes is too short for a darknet .weights header", path)
    major, minor, _revision = np.frombuffer(data[:12], dtype=np.int32)
    wide_seen = major * 10 + minor >= 2
    header_size = 20 if wide_seen else 16
    seen = int(np.frombuffer(data[12:header_size], dtype=np.int64 if wide_seen else np.int32)[0])
    if (len(data) - header_size) % 4:
        raise WeightsError("the body is not a whole number of float32 values: truncated or not "
                           "a darknet .weights file", path)
    values = np.frombuffer(data[header_size:], dtype=np.float32)
    offset = 0
    with torch.no_grad():
        for conv, bn in _conv_blocks(model, cutoff):
            for tensor in _tensors_in_file_order(conv, bn):
                n = tensor.numel()
                if offset + n > len(values):
                    raise WeightsError(
                        f"file ends after {offset} values but the model needs more "
                        f"(truncated, or written for another cfg)", path)
                tensor.copy_(torch.from_numpy(values[offset:offset + n].copy()).view_as(tensor))
                offset += n
    if cutoff is None and offset != len(values):
        raise WeightsError(f"{len(values) - offset} values left over after loading all "
                           f"{offset}: the file was written for another cfg", path)
    return seen


def save_darknet_weights(model: nn.Module, path: str | Path, seen: int = 0,
                         cutoff: int | None = None) -> None:
    """Write ``model`` in darknet format (version 0.2.0, int64 images-seen counter)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.array([0, 2, 0], dtype=np.int32).tofile(f)
        np.array([seen], dtype=np.int64).tofile(f)
        for conv, bn in _conv_blocks(model, cutoff):
            for tensor in _tensors_in_file_order(conv, bn):
                tensor.detach().cpu().float().numpy().tofile(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
