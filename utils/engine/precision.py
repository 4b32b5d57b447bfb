"""Mixed precision: which arithmetic a run computes in, and the pieces that apply it.

Weights, optimizer state, EMA and the loss stay fp32; only the forward pass runs under autocast:
- CPU: bf16 where the processor has native bf16 instructions (avx512_bf16 or AMX, as torch
  reports them), else fp32, with the reason said;
- CUDA: bf16 where the GPU supports it (no loss scaling needed), else fp16 with a gradient
  scaler.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, asked of torch (not guessed from a model name),
    and the instruction set that says so."""
    if torch.cpu._is_amx_tile_supported():
        return True, "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return True, "avx512_bf16"
    return False, "no avx512_bf16 or AMX instructions"


def choose_precision(amp: bool | None, repro: bool, device: torch.device
                     ) -> tuple[str, str]:
    """(precision, reason). ``amp`` None: mixed precision where it is native, except under
    --repro, which defaults to fp32 so CPU and GPU runs compare the same arithmetic."""
    if amp is False or (amp is None and repro):
        return "fp32", "--no-amp" if amp is False else "--repro defaults to fp32 (--amp for bf16)"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{torch.cuda.get_device_name(device)} supports bf16"
        return "fp16", "this GPU has no bf16: fp16 with a gradient scaler"
    native, why = cpu_native_bf16()
    if native:
        return "bf16", f"the CPU has native bf16 ({why})"
    return "fp32", f"mixed precision off: the CPU has {why}, so bf16 would be emulated and slower"


def inference_precision(requested: str | None, trained: str, device: torch.device
                        ) -> tuple[str, str]:
    """(precision, reason) of detect.py's forward pass: ``requested`` (--precision) when
    given; else fp32 on the CPU, as an .onnx export computes (onnxruntime, fp32), so the two
    give the same boxes; else (a GPU) the ``trained`` precision, for speed."""
    if requested:
        return requested, "--precision"
    if device.type == "cuda" or trained == "fp32":
        return trained, "the checkpoint's"
    return "fp32", (f"the CPU's default, as an .onnx export computes; the run trained in "
                    f"{trained}: --precision {trained} computes as its evaluation did")


def autocast_factory(precision: str, device: torch.device
                     ) -> Callable[[], contextlib.AbstractContextManager] | None:
    """A factory of autocast contexts for ``precision`` on ``device``; None for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    dtype = AUTOCAST_DTYPES[precision]
    return lambda: torch.autocast(device.type, dtype=dtype)


def forward_context(autocast: Callable[[], contextlib.AbstractContextManager] | None
                    ) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in: ``autocast()`` (a factory from
    :func:`autocast_factory`), or no context at all for fp32 (None)."""
    return autocast() if autocast is not None else contextlib.nullcontext()


def checkpoint_autocast(meta: dict, device: torch.device
                        ) -> Callable[[], contextlib.AbstractContextManager] | None:
    """The autocast factory of the training a checkpoint came from (``meta`` as
    ``load_inference_model`` returns it), so inference computes as the run evaluated; fp32 for
    runs from before mixed precision and for darknet files."""
    return autocast_factory((meta.get("args") or {}).get("precision", "fp32"), device)


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
    if precision == "fp16":
        return torch.amp.GradScaler(device.type)
    return None
