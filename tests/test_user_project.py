"""A user's own project, as the README's "Train on your own data" lays it out: a list-file .data
(the README's, word for word), class names with spaces, jpg and png mixed, non-square images of
different sizes, some without a label file; trained from a darknet backbone cut from another
model; test.py and detect.py then agree on the boxes and print the names as written."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
import torch

import detect
import test as test_script
import train
from models import Darknet
from models.darknet_weights import read_darknet_file
from tests.helpers import MICRO_CFG, ROOT, run_train
from tools import convert_weights
from utils.data.shapes import label_text, make_image
from utils.engine.checkpoint import load_initial_weights

NAMES = ["red circle", "big rectangle", "traffic light", "star"]
# (split, index, width, height, suffix, has a label file)
IMAGES = [("train", i, w, h, sfx, i % 5 != 4)
          for i, (w, h, sfx) in enumerate([(120, 80, ".jpg"), (64, 48, ".png"), (80, 96, ".jpg"),
                                           (100, 100, ".png")] * 3)]
IMAGES += [("val", i, w, h, sfx, i != 2)
           for i, (w, h, sfx) in enumerate([(120, 80, ".png"), (64, 48, ".jpg"), (72, 88, ".png"),
                                            (96, 64, ".jpg")])]

pytestmark = pytest.mark.slow


def _readme_data_file() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Train on your own data"):]
    return re.search(r"```text\n(classes=.*?)```", section, re.S).group(1)


def make_project(root):
    """The README's layout under ``root`` (a folder name with a space in it)."""
    lists = {"train": [], "val": []}
    for split, i, w, h, suffix, labelled in IMAGES:
        square, labels = make_image(7, split, i, 96)
        img = cv2.resize(square, (w, h), interpolation=cv2.INTER_AREA)  # labels stay normalized
        image = root / "images" / split / f"{split} {i:02d}{suffix}"
        image.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image), img)
        if labelled:
            label = root / "labels" / split / f"{split} {i:02d}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(label_text(labels))
        lists[split].append(f"../images/{split}/{image.name}")
    (root / "lists").mkdir()
    for split, lines in lists.items():
        (root / "lists" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "mydata.names").write_text("\n".join(NAMES) + "\n")
    data = root / "mydata.data"
    data.write_text(_readme_data_file())
    return data


@pytest.fixture(scope="module")
def project(tiny_data, tmp_path_factory):
    """The project trained 2 epochs from a backbone cut from another model."""
    base = tmp_path_factory.mktemp("user")
    data = make_project(base / "my data")
    other = run_train(tiny_data, base / "other", "--epochs", "1")
    backbone = base / "micro.conv.8"
    convert_weights.main(convert_weights.get_args_parser().parse_args(
        [str(other / "weights" / "last.pt"), str(backbone)]))
    args = train.get_args_parser().parse_args(
        ["--cfg", str(MICRO_CFG), "--data", str(data), "--img-size", "96", "--batch-size", "4",
         "--epochs", "2", "--weights", str(backbone), "--project", str(base / "runs"),
         "--quiet", "--no-amp"])  # fp32: bf16 scores tie often, and ties make "the top box" moot
    return {"data": data, "backbone": backbone, "base": base, "train_args": args}


def test_trains_from_the_backbone_and_says_what_it_loaded(project, capsys):
    run = train.main(project["train_args"])
    out = capsys.readouterr().out
    assert ("weights: loaded layers 0..7 (6 convolutions) from micro.conv.8; layers 8..18 keep "
            "their initialisation") in out
    assert "train: 12 images" in out and "2 without a label file" in out
    assert "val: 4 images" in out and "1 without a label file" in out
    assert (run / "weights" / "best.pt").is_file()
    project["run"] = run


def test_loaded_layers_equal_the_files_values(project):
    model = Darknet(MICRO_CFG, num_classes=4)
    load_initial_weights(model, project["backbone"])
    values = read_darknet_file(project["backbone"]).values
    offset = 0
    for block in list(model.module_list)[:8]:
        if not hasattr(block, "Conv2d"):
            continue
        bn = block.BatchNorm2d
        for tensor in (bn.bias, bn.weight, bn.running_mean, bn.running_var, block.Conv2d.weight):
            expected = torch.from_numpy(values[offset:offset + tensor.numel()].copy())
            if tensor is bn.running_var:  # darknet's divisor sqrt(v) + 1e-6, held our way
                torch.testing.assert_close((tensor.double() + bn.eps).sqrt(),
                                           expected.double().sqrt() + 1e-6, rtol=1e-6, atol=0)
            else:
                torch.testing.assert_close(tensor.detach().reshape(-1), expected, rtol=0, atol=0)
            offset += tensor.numel()
    assert offset == len(values)


def test_test_and_detect_agree_and_print_names_as_written(project, tmp_path, capsys):
    if "run" not in project:
        project["run"] = train.main(project["train_args"])
    weights = project["run"] / "weights" / "best.pt"
    capsys.readouterr()
    test_script.main(test_script.get_args_parser().parse_args(
        ["--weights", str(weights), "--save-json", "--device", "cpu"]))
    table = capsys.readouterr().out
    assert re.search(r"^ *traffic light +\d", table, re.M), table
    detections = json.loads(weights.with_suffix(".detections.json").read_text())
    images = json.loads(weights.with_suffix(".ground_truth.json").read_text())["images"]
    ids = {image["file_name"]: image["id"] for image in images}
    out_dir = detect.main(detect.get_args_parser().parse_args(
        ["--weights", str(weights), "--source", str(project["data"].parent / "images" / "val"),
         "--conf-thres", "0.0001", "--save-txt", "--save-conf", "--project", str(tmp_path),
         "--device", "cpu"]))
    printed = capsys.readouterr().out
    checked = 0
    for split, i, w, h, suffix, _ in IMAGES:
        if split != "val":
            continue
        name = f"val {i:02d}"
        mine = [d for d in detections if d["image_id"] == ids[name + suffix]]
        rows = np.loadtxt(out_dir / "labels" / f"{name}.txt", ndmin=2)
        if not mine:
            assert rows.size == 0
            continue
        # The most confident box is the same whichever NMS mode keeps it (test.py keeps one per
        # class above the threshold, detect.py the best class): same pixels in, same box out.
        best = max(mine, key=lambda d: d["score"])
        top = rows[rows[:, 5].argmax()]
        x, y, bw, bh = best["bbox"]
        expected = [(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h]
        np.testing.assert_allclose(top[1:5], expected, atol=2e-6)
        assert int(top[0]) == best["category_id"] - 1 and abs(top[5] - best["score"]) < 1e-5
        checked += 1
    assert checked >= 3
    assert any(n in printed for n in ("red circle", "big rectangle", "traffic light")), printed
