"""Running an ONNX file written by `python -m tools.export` back: its metadata and a predictor
on onnxruntime, so detect.py and test.py read .onnx models through the library alone."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from utils.base.errors import InputError, WeightsError


def is_onnx_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def read_metadata(path: str | Path) -> dict:
    """The metadata :func:`onnx_bytes` wrote: img_size (int), names (list), num_classes,
    source_sha256, and f1_conf (the run's best-F1 score threshold; None where the checkpoint
    had none, or the file is from before it was written)."""
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError and others for a bad file
        raise WeightsError(f"not an ONNX file onnx can read ({err})", path) from None
    props = {p.key: p.value for p in proto.metadata_props}
    missing = [k for k in ("img_size", "names") if k not in props]
    if missing:
        raise WeightsError(f"no {', '.join(missing)} in the metadata: not written by "
                           "python -m tools.export", path)
    names = json.loads(props["names"])
    f1_conf = props.get("f1_conf")
    return {"img_size": int(props["img_size"]), "names": names, "num_classes": len(names),
            "source_sha256": props.get("source_sha256"),
            "f1_conf": float(f1_conf) if f1_conf is not None else None}


def load_onnx_model(path: str | Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
    """A predictor (uint8 [B, 3, S, S] RGB -> float32 detections [B, N, 5 + C]) running the
    file in onnxruntime on the CPU, and the file's metadata."""
    try:
        import onnxruntime
    except ImportError:
        raise InputError("an .onnx file needs onnxruntime (pip install onnxruntime)",
                         path) from None
    meta = read_metadata(path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def predict(images: torch.Tensor) -> torch.Tensor:
        x = images.float().div(255).numpy()
        return torch.from_numpy(session.run(["detections"], {"images": x})[0])
    return predict, meta
