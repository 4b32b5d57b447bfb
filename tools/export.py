"""ONNX files of a trained model: writing one (with its box decode) and running one back.

    python -m tools.export runs/train/exp/weights/best.pt best.onnx
    python -m tools.export yolov3.weights yolov3.onnx --cfg cfg/yolov3.cfg --names coco.names
    python detect.py --weights best.onnx --source data/shapes/images/val

The file takes ``images``: float32 [B, 3, S, S], RGB, 0..1, letterboxed to S as test.py and
detect.py do, and gives ``detections``: float32 [B, N, 5 + C], each row a box centre and size in
input pixels (x, y, w, h), the objectness and the C class scores (sigmoids), before NMS. Its
metadata holds the input size, the class names (JSON), the layout above and the SHA-256 of the
weights it came from. The export runs in fp32 whatever the training's precision, is checked
against onnxruntime on a fixed input (the largest difference is printed; above 1e-4 the command
exits 1), and is deterministic: the same weights give the same bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.onnx_model import is_onnx_file
from utils.base.errors import InputError, report_input_error
from utils.data.data_config import read_names
from utils.engine.checkpoint import check_img_size, load_inference_model

OPSET = 17
PARITY_TOLERANCE = 1e-4
LAYOUT = "x y w h (input pixels), objectness, class scores; before NMS"


class _Decoded(nn.Module):
    """The model's decoded output only (its raw head outputs are for the loss)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[0]


def onnx_bytes(model: nn.Module, img_size: int, metadata: dict[str, str]) -> bytes:
    """The ONNX serialization of ``model`` (eval, fp32, CPU) for [B, 3, img_size, img_size]
    input, with ``metadata`` as the file's metadata properties."""
    import onnx

    wrapper = _Decoded(model.float().cpu()).eval()
    example = torch.zeros(1, 3, img_size, img_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter: deterministic bytes and no onnxscript dependency; its
        # deprecation and constant-folding notes say nothing about this model.
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["images"], output_names=["detections"],
                          dynamic_axes={"images": {0: "batch"}, "detections": {0: "batch"}})
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in sorted(metadata.items()):
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString(deterministic=True)


def parity_input(img_size: int, batch: int = 2) -> torch.Tensor:
    """A fixed input for the parity check: uniform noise from a seeded CPU generator."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, img_size, img_size, generator=generator)


def largest_difference(model: nn.Module, path: Path, images: torch.Tensor) -> tuple[float, float]:
    """(largest |torch - onnxruntime| over box coordinates, over scores) on ``images``."""
    import onnxruntime

    with torch.no_grad():
        ours = _Decoded(model).eval()(images).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(["detections"], {"images": images.numpy()})[0]
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    return float(diff[..., :4].max()), float(diff[..., 4:].max())


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export a model to ONNX, with its box decode.")
    parser.add_argument("weights", help="a .pt checkpoint (its EMA weights) or darknet weights")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--cfg", default=None, help="cfg of a darknet weights file")
    parser.add_argument("--names", default=None,
                        help="class names file (default: the checkpoint's names)")
    parser.add_argument("--img-size", type=int, default=None,
                        help="input size (default: the training size, else 416)")
    return parser


def main(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if not is_onnx_file(output):
        raise InputError("the output must end in .onnx", output)
    model, meta = load_inference_model(args.weights, args.cfg)
    names = read_names(Path(args.names)) if args.names else meta.get("names")
    names = names or [str(i) for i in range(model.num_classes)]
    if len(names) != model.num_classes:
        raise InputError(f"{len(names)} class names for a model of {model.num_classes} classes",
                         args.names or args.weights)
    img_size = args.img_size or meta.get("img_size") or 416
    check_img_size(img_size, model)
    model.eval()
    digest = hashlib.sha256(Path(args.weights).read_bytes()).hexdigest()
    metadata = {"img_size": str(img_size), "names": json.dumps(names), "layout": LAYOUT,
                "input": "images: float32 [B, 3, S, S] RGB 0..1, letterboxed",
                "source_sha256": digest, "producer": "yolov3-repro tools.export"}
    tmp = output.with_name(f".{output.name}.tmp")  # never a half-written .onnx under its name
    tmp.write_bytes(onnx_bytes(model, img_size, metadata))
    os.replace(tmp, output)
    box_diff, score_diff = largest_difference(model, output, parity_input(img_size))
    worst = max(box_diff, score_diff)
    print(f"wrote {output} ({img_size} px, {len(names)} classes, opset {OPSET})")
    print(f"onnxruntime vs torch (fp32, 2 fixed inputs): largest difference {box_diff:.3g} in "
          f"box coordinates (pixels), {score_diff:.3g} in scores; tolerance "
          f"{PARITY_TOLERANCE:g}: {'ok' if worst <= PARITY_TOLERANCE else 'EXCEEDED'}")
    return 0 if worst <= PARITY_TOLERANCE else 1


if __name__ == "__main__":
    try:
        sys.exit(main(get_args_parser().parse_args()))
    except InputError as err:
        sys.exit(report_input_error(err))
