"""Bad input gets a clear message naming the file, the line and what was expected."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

import train
from models import Darknet
from tests.helpers import MICRO_CFG, train_args
from utils.base.errors import DataConfigError, ImageError, InputError, WeightsError
from utils.data.data_config import load_data_config
from utils.data.datasets import YoloDataset
from utils.data.image_io import load_image
from utils.engine.checkpoint import load_checkpoint, load_inference_model, load_initial_weights

# .data files ---------------------------------------------------------------------------------

def _data(tmp_path, text, names=4):
    (tmp_path / "n.names").write_text("\n".join(f"c{i}" for i in range(names)) + "\n")
    (tmp_path / "images").mkdir(exist_ok=True)
    path = tmp_path / "x.data"
    path.write_text(text)
    return path


GOOD = "classes=4\ntrain=images\nvalid=images\nnames=n.names\n"


@pytest.mark.parametrize("text, names, message, line", [
    ("classes=4\nvalid=images\nnames=n.names\n", 4, "missing key 'train'", None),
    ("classes=4\ntrain=nowhere\nvalid=images\nnames=n.names\n", 4,
     "train=nowhere does not exist", 2),
    ("classes=3\ntrain=images\nvalid=images\nnames=n.names\n", 4, "lists 4 names but classes=3", 4),
    ("classes=four\ntrain=images\nvalid=images\nnames=n.names\n", 4, "not an integer", 1),
    ("classes=4\ntrain images\n", 4, "expected 'key=value'", 2),
])
def test_bad_data_file(tmp_path, text, names, message, line):
    path = _data(tmp_path, text, names)
    with pytest.raises(DataConfigError) as err:
        load_data_config(path)
    assert message in str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: " if line else f"{path}: ")


def test_data_file_from_a_windows_editor(tmp_path):
    """A byte-order mark and CRLF line ends, in the .data and the names file."""
    path = _data(tmp_path, "")
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    (tmp_path / "n.names").write_bytes(b"\xef\xbb\xbfc0\r\nc 1\r\nc2\r\nc3\r\n")
    config = load_data_config(path)
    assert config.num_classes == 4 and config.names == ["c0", "c 1", "c2", "c3"]


def test_missing_data_file(tmp_path):
    with pytest.raises(DataConfigError, match="file not found"):
        load_data_config(tmp_path / "none.data")


@pytest.mark.slow
def test_no_images_found(tmp_path):
    path = _data(tmp_path, GOOD)
    with pytest.raises(DataConfigError, match="no images found"):
        train.main(train_args(path, tmp_path / "runs"))


# Images --------------------------------------------------------------------------------------

def _png(path, img):
    cv2.imwrite(str(path), img)
    return path


def test_image_problems(tmp_path):
    img = np.full((20, 30, 3), 90, np.uint8)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    jpg = tmp_path / "cut.jpg"
    cv2.imwrite(str(jpg), img)
    jpg.write_bytes(jpg.read_bytes()[:-50])
    png = _png(tmp_path / "cut.png", img)
    png.write_bytes(png.read_bytes()[:-20])
    for path, message in ((empty, "zero-byte"), (text, "not an image"),
                          (jpg, "truncated JPEG"), (png, "truncated PNG")):
        with pytest.raises(ImageError) as err:
            load_image(path)
        assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_grey_and_rgba_are_converted(tmp_path):
    grey = _png(tmp_path / "g.png", np.full((8, 9), 200, np.uint8))
    rgba = _png(tmp_path / "a.png", np.full((8, 9, 4), 100, np.uint8))
    for p in (grey, rgba):
        assert load_image(p).shape == (8, 9, 3)


def test_bad_images_and_rows_are_skipped_and_counted(tiny_data, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(tiny_data.parent / "images", root / "images")
    shutil.copytree(tiny_data.parent / "labels", root / "labels")
    (root / "images" / "train" / "000000.png").write_bytes(b"")
    (root / "labels" / "train" / "000001.txt").write_text("0 0.5 0.5 0.1\n7 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "train" / "000002.txt").unlink()
    files = sorted((root / "images" / "train").glob("*.png"))
    ds = YoloDataset(files, 4, 64)
    assert len(ds) == len(files) - 1
    assert ds.report.labels.missing == 1
    assert len(ds.report.skipped_images) == 1 and "zero-byte" in ds.report.skipped_images[0]
    assert len(ds.report.labels.skipped) == 2
    assert "skipped 1 bad images and 2 bad label rows" in ds.report.summary()


# Weights -------------------------------------------------------------------------------------

def test_wrong_kind_of_weights_file(tmp_path):
    path = tmp_path / "w.pt"
    path.write_text("hello")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
        load_checkpoint(path)
    torch.save({"a": 1}, path)
    with pytest.raises(WeightsError, match="not a checkpoint written by this trainer"):
        load_inference_model(path)


@pytest.mark.slow
def test_shape_mismatches_are_listed_key_by_key(tiny_data, tmp_path):
    run = train.main(train_args(tiny_data, tmp_path, "--epochs", "1", "--single-cls"))
    model = Darknet(MICRO_CFG, num_classes=4)  # heads for 4 classes, weights for 1
    loaded, *skipped = load_initial_weights(model, run / "weights" / "last.pt")
    assert loaded == "loaded last.pt"
    assert len(skipped) == 4  # weight and bias of both head convs
    assert all(s.startswith("not loaded ") and "weights (18," in s and "vs model (27," in s
               for s in skipped)


# Options -------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("extra, message", [
    (["--epochs", "-1"], "--epochs -1"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--img-size", "100"], "multiple of 32"),
    (["--device", "tpu"], "--device 'tpu' is not a device"),
    (["--resume", "runs/none"], "no such run folder"),
])
def test_bad_options(tiny_data, tmp_path, extra, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        train.main(train_args(tiny_data, tmp_path, *extra))


@pytest.mark.slow
def test_existing_run_folder_is_never_overwritten(tiny_data, tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "results.txt").write_text("precious\n")
    run = train.main(train_args(tiny_data, tmp_path, "--epochs", "1"))
    assert run.name == "exp2"
    assert (tmp_path / "exp" / "results.txt").read_text() == "precious\n"


def _without_labels(tiny_data, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(tiny_data.parent / "images", root / "images")
    shutil.copytree(tiny_data.parent / "labels", root / "annotations")  # the usual mistake
    shutil.copy(tiny_data.parent / "tiny.names", root)
    shutil.copy(tiny_data, root)
    return root / "tiny.data"


@pytest.mark.slow
def test_no_label_file_at_all_is_loud(tiny_data, tmp_path, capsys):
    data = _without_labels(tiny_data, tmp_path)
    expected = str(tmp_path / "set" / "labels" / "train" / "000000.txt")
    # autoanchor has nothing to measure: refused before any training, naming the way out.
    with pytest.raises(InputError) as err:
        train.main(train_args(data, tmp_path / "runs", "--epochs", "1"))
    assert "the 16 training images hold no label boxes" in str(err.value)
    assert expected in str(err.value) and "--noautoanchor" in str(err.value)
    assert not (tmp_path / "runs").exists()
    train.main(train_args(data, tmp_path / "runs", "--epochs", "1", "--noautoanchor"))
    out = capsys.readouterr().out
    assert "WARNING: none of the 16 train images has a label file" in out
    assert expected in out
    with pytest.raises(InputError, match="--repro refuses to train on no labels"):
        train.main(train_args(data, tmp_path / "runs", "--epochs", "1", "--repro",
                              "--noautoanchor"))


@pytest.mark.slow
def test_test_script_refuses_an_image_size_off_the_stride(tiny_data, tmp_path):
    import test as test_script
    run = train.main(train_args(tiny_data, tmp_path, "--epochs", "1"))
    args = test_script.get_args_parser().parse_args(
        ["--weights", str(run / "weights" / "last.pt"), "--img-size", "100"])
    with pytest.raises(InputError, match="--img-size 100: must be a positive multiple of 32"):
        test_script.main(args)


def test_a_cfg_with_a_route_before_the_first_layer_and_no_yolo_layer_is_named(tiny_data, tmp_path):
    """This exact file once ended in ZeroDivisionError (the loss gains scaled by the yolo-layer
    count before the cfg was checked)."""
    from tests.helpers import ROOT
    cfg = ROOT / "tests" / "data" / "bad_cfgs" / "route_before_first_layer.cfg"
    args = train_args(tiny_data, tmp_path, "--cfg", str(cfg))
    with pytest.raises(InputError, match=r"layers=-7 points at layer -6") as err:
        train.main(args)
    assert err.value.path == str(cfg) and err.value.line == 15
    no_yolo = tmp_path / "no_yolo.cfg"
    no_yolo.write_text(cfg.read_text().replace("layers=-7", "layers=-1"))
    with pytest.raises(InputError, match="the cfg has no \\[yolo\\] layer"):
        train.main(train_args(tiny_data, tmp_path, "--cfg", str(no_yolo)))
