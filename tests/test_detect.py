"""detect.py: one result per source file, unreadable images skipped and reported, label files
the label reader takes back, the class names and precision the user gave."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import detect
from models import Darknet
from tests.helpers import MICRO_CFG
from utils.base.atomic_io import atomic_torch_save
from utils.base.errors import ImageError, InputError
from utils.data.labels import parse_label_text
from utils.data.shapes import CLASS_NAMES
from utils.engine.checkpoint import weights_checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "micro.pt"
    atomic_torch_save(weights_checkpoint(Darknet(MICRO_CFG), list(CLASS_NAMES)), path)
    return path


def _image(path, seed=0):
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return path


def _run(weights, source, tmp_path, *extra):
    args = detect.get_args_parser().parse_args(
        ["--weights", str(weights), "--source", str(source), "--img-size", "64",
         "--conf-thres", "0.001", "--project", str(tmp_path / "out"), *extra])
    return detect.main(args)


def test_same_stem_in_one_folder_keeps_both_results(weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    _image(images / "a.png", 0)
    _image(images / "a.jpg", 1)
    _image(images / "b.png", 2)
    out = _run(weights, images, tmp_path)
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a_jpg.jpg", "a_png.jpg", "b.jpg"]


def test_output_stems_are_distinct_across_folders(tmp_path):
    files = [tmp_path / "x" / "a.png", tmp_path / "y" / "a.png", tmp_path / "a.jpg"]
    stems = detect.output_stems(files)
    assert len(set(stems.values())) == 3


def test_an_unreadable_image_is_skipped_and_the_run_fails_at_the_end(weights, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    _image(images / "good.png")
    (images / "bad.jpg").write_bytes(b"not an image")
    _image(images / "later.png", 1)
    with pytest.raises(ImageError, match=r"1 of 3 sources could not be read.*bad\.jpg"):
        _run(weights, images, tmp_path)
    out = tmp_path / "out" / "exp"
    assert sorted(p.name for p in out.glob("*.jpg")) == ["good.jpg", "later.jpg"]
    assert "skipped" in capsys.readouterr().out


def test_save_txt_writes_labels_the_label_reader_accepts(weights, tmp_path, capsys):
    _image(tmp_path / "a.png")
    out = _run(weights, tmp_path / "a.png", tmp_path, "--save-txt")
    text = (out / "labels" / "a.txt").read_text()
    rows, warnings = parse_label_text(text, len(CLASS_NAMES), "a.txt")
    assert text and warnings == [] and rows.shape[1] == 5
    assert "labels: class x y w h (normalized)\n" in capsys.readouterr().out
    scored = _run(weights, tmp_path / "a.png", tmp_path, "--save-txt", "--save-conf")
    assert {len(line.split()) for line in (scored / "labels" / "a.txt").read_text().splitlines()} \
        == {6}


def test_save_conf_without_save_txt_is_refused(weights, tmp_path):
    with pytest.raises(InputError, match="--save-txt"):
        _run(weights, tmp_path, tmp_path, "--save-conf")


def test_names_file_is_used_with_a_checkpoint(weights, tmp_path, capsys):
    _image(tmp_path / "a.png")
    names = tmp_path / "mine.names"
    names.write_text("apple\nbanana\ncherry\ndate\n")
    assert detect.class_names(detect.get_args_parser().parse_args(
        ["--weights", "w", "--names", str(names)]), list(CLASS_NAMES), 4) == \
        ["apple", "banana", "cherry", "date"]
    assert "class names from" in capsys.readouterr().out
    _run(weights, tmp_path / "a.png", tmp_path, "--names", str(names), "--conf-thres", "0")
    found = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("a: "))
    assert any(name in found for name in ("apple", "banana", "cherry", "date"))
    assert not any(name in found for name in CLASS_NAMES)


def test_names_file_of_another_class_count_is_refused(weights, tmp_path):
    names = tmp_path / "three.names"
    names.write_text("a\nb\nc\n")
    with pytest.raises(InputError, match="3 names but the model has 4 classes"):
        _run(weights, tmp_path, tmp_path, "--names", str(names))


def test_precision_option_overrides_the_checkpoints(weights, tmp_path, capsys):
    _image(tmp_path / "a.png")
    _run(weights, tmp_path / "a.png", tmp_path, "--precision", "bf16")
    assert "precision bf16\n" in capsys.readouterr().out
    _run(weights, tmp_path / "a.png", tmp_path)
    assert "precision fp32 (the checkpoint's)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        detect.get_args_parser().parse_args(["--weights", "w", "--precision", "fp8"])


def test_save_txt_writes_a_labels_folder_as_the_peers_do(weights, tmp_path):
    _image(tmp_path / "a.png")
    out = _run(weights, tmp_path / "a.png", tmp_path, "--save-txt")
    assert (out / "labels" / "a.txt").is_file() and not (out / "a.txt").exists()
    assert (out / "a.jpg").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--img-size", "0"], "--img-size 0: must be a positive multiple of 32"),
    (["--cfg", str(MICRO_CFG)], "--cfg applies to darknet weights files"),
])
def test_options_are_used_or_refused_never_replaced(weights, tmp_path, extra, message):
    _image(tmp_path / "a.png")
    args = detect.get_args_parser().parse_args(
        ["--weights", str(weights), "--source", str(tmp_path / "a.png"),
         "--project", str(tmp_path / "out"), *extra])
    with pytest.raises(InputError, match=message):
        detect.main(args)


def test_help_shows_the_thresholds_defaults():
    text = detect.get_args_parser().format_help()
    for flag, default in (("--conf-thres", "0.3"), ("--iou-thres", "0.6")):
        entry = text[text.index(f"  {flag} "):].split("\n  --")[0]
        assert f"default: {default}" in entry, entry


def test_nothing_found_says_the_highest_score_and_the_threshold(weights, tmp_path, capsys):
    _image(tmp_path / "a.png")
    _run(weights, tmp_path / "a.png", tmp_path, "--conf-thres", "0.99")
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("a: "))
    assert "nothing above --conf-thres 0.99" in line and "highest score" in line


def test_an_onnx_file_runs_with_device_cpu_where_it_runs_anyway(weights, tmp_path):
    pytest.importorskip("onnxruntime")
    from tools import export
    onnx_file = tmp_path / "m.onnx"
    export.main(export.get_args_parser().parse_args([str(weights), str(onnx_file),
                                                     "--img-size", "64"]))
    _image(tmp_path / "a.png")
    out = _run(onnx_file, tmp_path / "a.png", tmp_path, "--device", "cpu")
    assert (out / "a.jpg").is_file()
    with pytest.raises(InputError, match="--device does not apply to an ONNX file"):
        _run(onnx_file, tmp_path / "a.png", tmp_path, "--device", "0")
