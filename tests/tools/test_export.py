"""tools.export: the ONNX file agrees with the torch model (onnxruntime as the reference),
carries its input size, class names and the run's best-F1 threshold, comes out byte-identical
twice, and detect.py runs it with the .pt's boxes, by default too."""
from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

import detect
import test as test_script
from models import Darknet, onnx_model
from tests.helpers import MICRO_CFG, run_train
from utils.base.atomic_io import atomic_torch_save
from utils.base.errors import InputError, WeightsError
from utils.data.shapes import CLASS_NAMES
from utils.engine.checkpoint import load_checkpoint, weights_checkpoint

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
onnxruntime = pytest.importorskip("onnxruntime",
                                  reason="onnxruntime is not installed (pip install onnxruntime)")
export = pytest.importorskip("tools.export")
MICRO_CONVS = 11  # the conv layers of tests/data/micro.cfg


def _model(bn_gain: float = 1.0) -> Darknet:
    """The micro model with trained-looking batch-norm statistics, so the decode sees varied
    values; ``bn_gain`` scales the batch-norm weights: at 3 its activations grow layer by layer
    as a trained model's do, and torch and onnxruntime part by ~1e-4 px, as they do on the
    default run's bf16-trained best.pt (issue 27)."""
    torch.manual_seed(0)
    model = Darknet(MICRO_CFG)
    with torch.no_grad():
        for block in model.module_list:
            if hasattr(block, "BatchNorm2d"):
                block.BatchNorm2d.running_mean.uniform_(-0.2, 0.2)
                block.BatchNorm2d.running_var.uniform_(0.5, 2.0)
                block.BatchNorm2d.weight.mul_(bn_gain)
    return model.eval()


def _save(model, path, **keys):
    ckpt = weights_checkpoint(model, list(CLASS_NAMES))
    ckpt.update(img_size=64, **keys)
    atomic_torch_save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _save(_model(), tmp_path_factory.mktemp("export") / "micro.pt")


@pytest.fixture(scope="module")
def trained_looking(tmp_path_factory):
    """A checkpoint whose outputs carry a trained model's rounding (see ``_model``), its model
    and its ONNX file."""
    model, folder = _model(bn_gain=3.0), tmp_path_factory.mktemp("export")
    (folder / "trained.onnx").write_bytes(export.onnx_bytes(model, 64, {}))
    return _save(model, folder / "trained.pt"), model, folder / "trained.onnx"


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
    assert meta["f1_conf"] is None  # a weights-only checkpoint keeps none
    model = onnx.load(str(first))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:] == [3, 64, 64]
    from utils.engine.checkpoint import load_inference_model
    torch_model, _ = load_inference_model(checkpoint)
    result = export.parity(torch_model.eval(), first, export.parity_input(64))
    assert result["ok"] and result["box"] <= 1e-4 and result["score"] <= 1e-4


def test_a_missing_output_folder_is_made(checkpoint, tmp_path, capsys):
    """Issue 12: export to missing_dir/m.onnx raised FileNotFoundError."""
    out = tmp_path / "missing" / "deeper" / "m.onnx"
    assert _export(checkpoint, out) == 0
    assert out.is_file() and f"made folder {out.parent}" in capsys.readouterr().out


def test_a_trained_looking_model_passes_its_parity_check(trained_looking, tmp_path, capsys):
    """Issue 27: the default run's bf16-trained best.pt failed its own check, "largest
    difference 0.00061 in box coordinates (pixels) ... tolerance 0.0001: EXCEEDED": two fp32
    implementations of the same convolutions part by more than 1e-4 px on boxes of hundreds
    of pixels. Measured here, on this model: ~2e-4 px."""
    path, model, _ = trained_looking
    assert len([b for b in model.module_list if hasattr(b, "Conv2d")]) == MICRO_CONVS
    assert _export(path, tmp_path / "m.onnx") == 0
    printed = capsys.readouterr().out
    assert "<= 1e-05 x max(|value|, 64 px) for boxes" in printed
    assert printed.rstrip().endswith(": ok")


def _perturb_conv(index: int):
    def perturb(model):
        conv = [b.Conv2d for b in model.module_list if hasattr(b, "Conv2d")][index]
        conv.weight.view(-1)[0] += 1e-3
    return perturb


def _swap_anchors(model):
    head = model.heads[0]
    head.anchors.copy_(head.anchors.flip(0))


@pytest.mark.parametrize("divergence", [*map(_perturb_conv, range(MICRO_CONVS)), _swap_anchors],
                         ids=[*(f"conv{i}+1e-3" for i in range(MICRO_CONVS)), "anchors-swapped"])
def test_a_real_divergence_fails_the_parity_check(trained_looking, divergence):
    """The tolerance stays tight enough for a wrong layer or a wrong decode: one weight of any
    conv off by 1e-3 (the weakest, conv 3's, moves the outputs by 1.5e-5 of the scale), or the
    anchors in another order, between the ONNX file and the torch model."""
    _, model, onnx_file = trained_looking
    assert export.parity(model, onnx_file, export.parity_input(64))["ok"]
    changed = copy.deepcopy(model)
    with torch.no_grad():
        divergence(changed)
    result = export.parity(changed, onnx_file, export.parity_input(64))
    assert not result["ok"], result


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
        rows[weights.suffix] = np.loadtxt(out / "labels" / "img.txt", ndmin=2)
    assert len(rows[".pt"]) > 0
    np.testing.assert_allclose(rows[".onnx"], rows[".pt"], rtol=0, atol=2e-5)


def _label_rows(weights, image, project, *extra) -> np.ndarray:
    """detect.py's label rows with scores (class x y w h score) for ``image``, under its
    defaults but for ``extra``."""
    out = detect.main(detect.get_args_parser().parse_args(
        ["--weights", str(weights), "--source", str(image), "--save-txt", "--save-conf",
         "--project", str(project), *extra]))
    return np.loadtxt(out / "labels" / f"{image.stem}.txt", ndmin=2)


def _said(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_the_pt_and_its_onnx_give_the_same_boxes_by_default(trained_looking, tmp_path, capsys):
    """A bf16 run's checkpoint ran in bf16 on the CPU by default while its export runs fp32:
    the boxes differed with nothing said. Now both compute in fp32 on the CPU, at the run's
    best-F1 threshold, which the export carries."""
    _, model, _ = trained_looking
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    scores = np.sort(_label_rows(_save(model, tmp_path / "plain.pt"), image, tmp_path / "all",
                                 "--conf-thres", "0.001")[:, 5])
    conf = float(scores[len(scores) // 2 - 1: len(scores) // 2 + 1].mean())  # between two
    run = _save(model, tmp_path / "run.pt", args={"precision": "bf16"}, epoch=7, f1_conf=conf)
    onnx_file = tmp_path / "run.onnx"
    assert _export(run, onnx_file) == 0
    assert onnx_model.read_metadata(onnx_file)["f1_conf"] == conf
    capsys.readouterr()
    rows, said = {}, {}
    for weights in (run, onnx_file):
        rows[weights.suffix] = _label_rows(weights, image, tmp_path / weights.suffix)
        out = capsys.readouterr().out
        said[weights.suffix] = (_said(out, "conf-thres"), _said(out, "precision"))
    assert said[".pt"][0].startswith(f"conf-thres {conf:.3f} (the best-F1 score threshold")
    assert said[".onnx"][0].startswith(f"conf-thres {conf:.3f} (the best-F1 score threshold")
    assert said[".pt"][1].startswith("precision fp32 (the CPU's default")
    assert said[".onnx"][1].startswith("precision fp32")
    assert 0 < len(rows[".pt"]) < len(scores)
    np.testing.assert_allclose(rows[".onnx"], rows[".pt"], rtol=0, atol=2e-5)


@pytest.mark.slow
def test_a_trained_runs_checkpoint_and_export_agree_by_default(tiny_data, tmp_path, capsys):
    """End to end: a tiny training keeps its evaluation's best-F1 threshold in best.pt, the
    threshold test.py reads P and R at on those weights; the checkpoint and its ONNX export
    give the same boxes on the validation images under detect.py's defaults."""
    best = run_train(tiny_data, tmp_path / "train") / "weights" / "best.pt"
    f1_conf = load_checkpoint(best)["f1_conf"]
    assert f1_conf is not None and 0 < f1_conf < 1
    assert test_script.run(weights=str(best), quiet=True, plots=False).f1_conf == f1_conf
    onnx_file = tmp_path / "best.onnx"
    assert _export(best, onnx_file) == 0
    capsys.readouterr()
    found, said = {}, {}
    for weights in (best, onnx_file):
        found[weights.suffix] = {}
        detect.main(detect.get_args_parser().parse_args(
            ["--weights", str(weights), "--source", str(tiny_data.parent / "images" / "val"),
             "--project", str(tmp_path / "detect")]), found[weights.suffix])
        said[weights.suffix] = _said(capsys.readouterr().out, "conf-thres")
    assert [said[k].split(" (")[0] for k in said] == [f"conf-thres {f1_conf:.3f}"] * 2
    assert all("(the best-F1 score threshold of" in line for line in said.values())
    assert found[".pt"].keys() == found[".onnx"].keys() and len(found[".pt"]) == 8
    assert sum(len(d) for d in found[".pt"].values()) > 0
    for name, boxes in found[".pt"].items():
        # x1 y1 x2 y2 in pixels of a 64 px image, score, class: the parity check's tolerance
        torch.testing.assert_close(found[".onnx"][name], boxes, rtol=0, atol=1e-3)


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


@pytest.mark.parametrize("extra, message", [
    (["--img-size", "0"], "--img-size 0: must be a positive multiple of 32"),
    (["--cfg", str(MICRO_CFG)], "--cfg applies to darknet weights files"),
])
def test_options_are_used_or_refused_never_replaced(checkpoint, tmp_path, extra, message):
    with pytest.raises(InputError, match=message):
        _export(checkpoint, tmp_path / "m.onnx", *extra)
    assert not (tmp_path / "m.onnx").exists()


def test_a_cfg_with_scale_x_y_exports_its_decode(tmp_path, capsys):
    """The centre decode of scale_x_y 2 (YOLOv4's cfgs) is part of the exported graph: the
    parity check holds, and the cfg the checkpoint carries says it."""
    torch.manual_seed(0)
    text = MICRO_CFG.read_text().replace("[yolo]\n", "[yolo]\nscale_x_y=2.0\n")
    model = Darknet(MICRO_CFG, cfg_text=text).eval()
    ckpt = weights_checkpoint(model, list(CLASS_NAMES))
    assert "scale_x_y=2.0" in ckpt["cfg_text"]
    ckpt.update(img_size=64)
    atomic_torch_save(ckpt, tmp_path / "sxy.pt")
    assert _export(tmp_path / "sxy.pt", tmp_path / "sxy.onnx") == 0
    assert capsys.readouterr().out.rstrip().endswith(": ok")
    predict, _meta = onnx_model.load_onnx_model(tmp_path / "sxy.onnx")
    x = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        expected = model(x.float() / 255)[0]
    torch.testing.assert_close(torch.as_tensor(predict(x)), expected, rtol=1e-4, atol=1e-3)
