"""tools.export: the ONNX file agrees with the torch model (onnxruntime as the reference),
carries its input size and class names, comes out byte-identical twice, and detect.py runs it
with the .pt's boxes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import detect
from models import Darknet, onnx_model
from tests.helpers import MICRO_CFG
from utils.base.atomic_io import atomic_torch_save
from utils.base.errors import InputError, WeightsError
from utils.data.shapes import CLASS_NAMES
from utils.engine.checkpoint import weights_checkpoint

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
onnxruntime = pytest.importorskip("onnxruntime",
                                  reason="onnxruntime is not installed (pip install onnxruntime)")
export = pytest.importorskip("tools.export")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = Darknet(MICRO_CFG)
    with torch.no_grad():  # trained-looking statistics, so the decode sees varied values
        for block in model.module_list:
            if hasattr(block, "BatchNorm2d"):
                block.BatchNorm2d.running_mean.uniform_(-0.2, 0.2)
                block.BatchNorm2d.running_var.uniform_(0.5, 2.0)
    ckpt = weights_checkpoint(model, list(CLASS_NAMES))
    ckpt["img_size"] = 64
    path = tmp_path_factory.mktemp("export") / "micro.pt"
    atomic_torch_save(ckpt, path)
    return path


def _export(checkpoint, out, *extra):
    return export.main(export.get_args_parser().parse_args([str(checkpoint), str(out), *extra]))


def test_parity_metadata_and_identical_bytes(checkpoint, tmp_path, capsys):
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert _export(checkpoint, first) == 0
    printed = capsys.readouterr().out
    assert "largest difference" in printed and ": ok" in printed
    assert _export(checkpoint, second) == 0
    assert first.read_bytes() == second.read_bytes()
    meta = onnx_model.read_metadata(first)
    assert meta["img_size"] == 64 and meta["names"] == list(CLASS_NAMES)
    model = onnx.load(str(first))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:] == [3, 64, 64]
    from utils.engine.checkpoint import load_inference_model
    torch_model, _ = load_inference_model(checkpoint)
    box, score = export.largest_difference(torch_model.eval(), first, export.parity_input(64))
    assert box <= 1e-4 and score <= 1e-4


def test_detect_on_onnx_gives_the_boxes_of_the_checkpoint(checkpoint, tmp_path):
    onnx_file = tmp_path / "m.onnx"
    _export(checkpoint, onnx_file)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "img.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    rows = {}
    for weights in (checkpoint, onnx_file):
        out = detect.main(detect.get_args_parser().parse_args(
            ["--weights", str(weights), "--source", str(tmp_path / "img.png"), "--save-txt",
             "--save-conf", "--conf-thres", "0.001", "--project", str(tmp_path / weights.suffix)]))
        rows[weights.suffix] = np.loadtxt(out / "img.txt", ndmin=2)
    assert len(rows[".pt"]) > 0
    np.testing.assert_allclose(rows[".onnx"], rows[".pt"], rtol=0, atol=2e-5)


def test_onnx_refuses_options_it_cannot_honour(checkpoint, tmp_path):
    onnx_file = tmp_path / "m.onnx"
    _export(checkpoint, onnx_file)
    for extra in (["--precision", "bf16"], ["--img-size", "96"], ["--fuse"]):
        with pytest.raises(InputError):
            detect.main(detect.get_args_parser().parse_args(
                ["--weights", str(onnx_file), "--source", str(tmp_path), *extra]))


def test_a_foreign_onnx_file_is_refused(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"garbage")
    with pytest.raises(WeightsError):
        onnx_model.read_metadata(path)
