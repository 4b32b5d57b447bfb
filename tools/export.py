"""ONNX files of a trained model: writing one (with its box decode) and running one back.

    python -m tools.export runs/train/exp/weights/best.pt best.onnx
    python -m tools.export yolov3.weights yolov3.onnx --cfg cfg/yolov3.cfg --names coco.names
    python detect.py --weights best.onnx --source data/shapes/images/val

The file takes ``images``: float32 [B, 3, S, S], RGB, 0..1, letterboxed to S as test.py and
detect.py do, and gives ``detections``: float32 [B, N, 5 + C], each row a box centre and size in
input pixels (x, y, w, h), the objectness and the C class scores (sigmoids), before NMS. Its
metadata holds the input size, the class names (JSON), the layout above, the SHA-256 of the
weights it came from and, where the checkpoint has it, the run's best-F1 score threshold
(``f1_conf``: detect.py's default --conf-thres, for the .onnx as for the .pt). The export runs
in fp32 whatever the training's precision, and is deterministic: the same weights give the same
bytes. A missing folder of the output is made.

The parity check runs the file in onnxruntime and the model in torch on a fixed input and
holds every output value v to

    |torch - onnxruntime| <= RTOL * max(|v|, S),   RTOL = 1e-5 (84 float32 epsilons),

S the input size in pixels for the box columns (x, y, w, h) and 1 for the scores. Why relative:
the two sum the same convolutions in another order, and each sum rounds to a few float32
epsilons (2^-23) of the magnitudes summed; a trained model's activations grow to tens and
hundreds, and the boxes are hundreds of pixels, so the box coordinates part by ~1e-4..1e-3 px
(the default run's bf16-trained best.pt: 0.00061 px at 224 px, 2.7e-6 of the scale; a micro
model with trained-looking weights, tests/tools/test_export.py: 2.1e-4 px at 64 px, 9e-7). An
absolute 1e-4 px, the check before, failed those. Why 84 epsilons: 4 to 10 times what such
models show, and still below what a real divergence does: one weight of any conv off by 1e-3
moves that test model's outputs by 1.5e-5 to 9e-4 of the scale, the anchors in another order
by 0.3. The printed line gives the largest differences and the worst as a fraction of what is
allowed; over it the command exits 1.
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
from utils.base.errors import InputError, counted, report_input_error
from utils.data.data_config import read_names
from utils.engine.checkpoint import check_img_size, load_inference_model

OPSET = 17
# |torch - onnxruntime| allowed, relative to max(|value|, the scale): 84 float32 epsilons (the
# module's docstring says why).
PARITY_RTOL = 1e-5
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


def parity(model: nn.Module, path: Path, images: torch.Tensor) -> dict:
    """torch against onnxruntime on ``images`` [B, 3, S, S]: the largest |difference| over box
    coordinates ("box", pixels) and over scores ("score"), the worst difference as a fraction
    of what :data:`PARITY_RTOL` allows it ("worst"), and whether every value is within ("ok")."""
    import onnxruntime

    with torch.no_grad():
        ours = _Decoded(model).eval()(images).numpy().astype(np.float64)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(["detections"], {"images": images.numpy()})[0].astype(np.float64)
    diff = np.abs(ours - theirs)
    # The scale of each column: the input size for the boxes (pixels), 1 for the scores.
    scale = np.ones(ours.shape[-1])
    scale[:4] = images.shape[-1]
    worst = float(np.max(diff / (PARITY_RTOL * np.maximum(np.abs(ours), scale))))
    return {"box": float(diff[..., :4].max()), "score": float(diff[..., 4:].max()),
            "worst": worst, "ok": worst <= 1.0}


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
        raise InputError(f"{counted(len(names), 'class name')} for a model of "
                         f"{counted(model.num_classes, 'class')}",
                         args.names or args.weights)
    # 0 is refused by check_img_size, not replaced by the training size.
    img_size = args.img_size if args.img_size is not None else meta.get("img_size") or 416
    check_img_size(img_size, model)
    model.eval()
    digest = hashlib.sha256(Path(args.weights).read_bytes()).hexdigest()
    metadata = {"img_size": str(img_size), "names": json.dumps(names), "layout": LAYOUT,
                "input": "images: float32 [B, 3, S, S] RGB 0..1, letterboxed",
                "source_sha256": digest, "producer": "yolov3-repro tools.export"}
    if meta.get("f1_conf") is not None:  # so detect.py's default threshold is the .pt's
        metadata["f1_conf"] = repr(float(meta["f1_conf"]))
    if not output.parent.is_dir():
        output.parent.mkdir(parents=True)
        print(f"made folder {output.parent}")
    tmp = output.with_name(f".{output.name}.tmp")  # never a half-written .onnx under its name
    tmp.write_bytes(onnx_bytes(model, img_size, metadata))
    os.replace(tmp, output)
    result = parity(model, output, parity_input(img_size))
    print(f"wrote {output} ({img_size} px, {counted(len(names), 'class')}, opset {OPSET})")
    print(parity_line(result, img_size))
    return 0 if result["ok"] else 1


def parity_line(result: dict, img_size: int) -> str:
    """The check's line: the differences, the rule, and the worst against it."""
    return (f"onnxruntime vs torch (fp32, 2 fixed inputs): largest difference "
            f"{result['box']:.3g} px in box coordinates, {result['score']:.3g} in scores; "
            f"allowed |difference| <= {PARITY_RTOL:g} x max(|value|, {img_size} px) for boxes, "
            f"x max(|value|, 1) for scores (84 float32 epsilons of the scale); worst "
            f"{result['worst']:.2g} of that: {'ok' if result['ok'] else 'EXCEEDED'}")


if __name__ == "__main__":
    try:
        sys.exit(main(get_args_parser().parse_args()))
    except InputError as err:
        sys.exit(report_input_error(err))
