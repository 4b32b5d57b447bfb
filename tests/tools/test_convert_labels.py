"""tools.convert_labels: hand-made VOC and COCO sets with every odd case; nothing is dropped
without a line in the report; the COCO route round-trips its ids through test.py --save-json."""
from __future__ import annotations

import contextlib
import io
import json

import cv2
import numpy as np
import pytest

import test as test_script
from tests.helpers import run_train
from tools import convert_labels
from utils.base.errors import InputError
from utils.data.data_config import label_path_for, list_images, load_data_config
from utils.data.labels import parse_label_text


def _image(path, width=64, height=48, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _voc_object(name, box, difficult=0):
    x1, y1, x2, y2 = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
            f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
            "</bndbox></object>")


def _voc(root):
    objects = {
        "a": [_voc_object("dog", (1, 1, 32, 24)), _voc_object("cat", (40, 10, 80, 30)),
              _voc_object("dog", (10, 10, 20, 20), difficult=1)],
        "b": [_voc_object("cat", (30, 5, 20, 15)), _voc_object("dog", (70, 5, 80, 30)),
              _voc_object("zebra", (2, 2, 10, 10))],
        "c": [_voc_object("cat", (2, 2, 10, 10))],  # its image is missing
    }
    (root / "Annotations").mkdir(parents=True)
    for stem, objs in objects.items():
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size>{''.join(objs)}</annotation>")
        if stem != "c":
            _image(root / "JPEGImages" / f"{stem}.jpg")
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("a\nc\n")
    (main / "val.txt").write_text("b\n")
    (main / "cat_train.txt").write_text("a 1\nc -1\n")  # per-class files are not splits
    names = root / "mine.names"
    names.write_text("cat\ndog\n")
    return names


def _convert(*argv):
    return convert_labels.main(convert_labels.get_args_parser().parse_args([str(a) for a in argv]))


def test_voc_every_odd_case_is_reported(tmp_path, capsys):
    names = _voc(tmp_path / "VOC")
    data = _convert("voc", tmp_path / "VOC", tmp_path / "out", "--names", names)
    printed = capsys.readouterr().out
    config = load_data_config(data)
    assert config.names == ["cat", "dog"]
    assert [p.name for p in list_images(config.train)] == ["a.jpg"]
    assert [p.name for p in list_images(config.valid)] == ["b.jpg"]
    rows, warnings = parse_label_text(label_path_for(list_images(config.train)[0]).read_text(),
                                      2)
    assert warnings == []
    # dog (1, 1, 32, 24) is pixels 0..32 x 0..24; cat (40..80) is clipped at the width, 64.
    np.testing.assert_allclose(rows, [[1, 16 / 64, 12 / 48, 32 / 64, 24 / 48],
                                      [0, 51.5 / 64, 19.5 / 48, 25 / 64, 21 / 48]], atol=1e-6)
    report = json.loads((tmp_path / "out" / convert_labels.REPORT_FILE).read_text())
    assert report["counts"] == {"clipped": 1, "dropped": 1, "refused": 2, "left out": 1,
                                "image left out": 1}
    assert report["images"] == 2 and report["boxes"] == 2
    events = "\n".join(report["events"])
    for reason in ("a.xml: object 2 (cat): clipped", "b.xml: object 1 (cat): refused: xmin > "
                   "xmax", "b.xml: object 2 (dog): dropped: outside the image", "b.xml: object 3 "
                   "(zebra): refused: unknown class", "a.xml: object 3 (dog): left out: "
                   "difficult", "c: image left out: image file missing"):
        assert reason in events
        assert reason in printed
    assert len(report["sources_sha256"]["annotations"]) == 64


def test_voc_keep_difficult_and_default_class_order(tmp_path, capsys):
    _voc(tmp_path / "VOC")
    data = _convert("voc", tmp_path / "VOC", tmp_path / "out", "--keep-difficult")
    config = load_data_config(data)
    assert config.names == ["cat", "dog", "zebra"]  # sorted: zebra is not a VOC class
    report = json.loads((tmp_path / "out" / convert_labels.REPORT_FILE).read_text())
    assert "left out" not in report["counts"] and report["boxes"] == 4


def _coco(root):
    for i, name in enumerate(("x.png", "y.png", "z.png")):
        _image(root / "imgs" / name, seed=i)
    instances = {
        "images": [{"id": 101, "file_name": "x.png", "width": 64, "height": 48},
                   {"id": 205, "file_name": "y.png", "width": 64, "height": 48},
                   {"id": 309, "file_name": "z.png", "width": 64, "height": 48},
                   {"id": 400, "file_name": "gone.png", "width": 64, "height": 48}],
        "categories": [{"id": 12, "name": "bird"}, {"id": 3, "name": "car"},
                       {"id": 7, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 101, "category_id": 3, "bbox": [4, 4, 20, 16], "iscrowd": 0},
            {"id": 2, "image_id": 101, "category_id": 12, "bbox": [30, 20, 20, 20],
             "iscrowd": 0},
            {"id": 3, "image_id": 205, "category_id": 7, "bbox": [50, 30, 30, 30],
             "iscrowd": 0},
            {"id": 4, "image_id": 205, "category_id": 7, "bbox": [0, 0, 64, 48], "iscrowd": 1},
            {"id": 5, "image_id": 205, "category_id": 9, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 6, "image_id": 309, "category_id": 3, "bbox": [10, 10, -5, 5], "iscrowd": 0},
            {"id": 7, "image_id": 309, "category_id": 12, "bbox": [10, 10, 12, 14],
             "iscrowd": 0},
            {"id": 8, "image_id": 999, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0}],
    }
    for ann in instances["annotations"]:
        ann["area"] = abs(ann["bbox"][2] * ann["bbox"][3])
    path = root / "instances_val.json"
    path.write_text(json.dumps(instances))
    return path


def test_coco_every_odd_case_is_reported(tmp_path, capsys):
    instances = _coco(tmp_path)
    data = _convert("coco", instances, tmp_path / "imgs", tmp_path / "out")
    config = load_data_config(data)
    assert config.names == ["car", "cat", "bird"]  # by category id: 3, 7, 12
    report = json.loads((tmp_path / "out" / "conversion_report_val.json").read_text())
    assert report["counts"] == {"clipped": 1, "refused": 3, "left out": 1, "image left out": 1}
    events = "\n".join(report["events"])
    for reason in ("annotation 4 (image y.png): left out: iscrowd",
                   "annotation 5 (image y.png): refused: unknown category_id 9",
                   "annotation 6 (image z.png): refused: xmin > xmax",
                   "annotation 3 (image y.png): clipped", "gone.png: image left out",
                   "image_id 999: refused"):
        assert reason in events
    ids = json.loads((tmp_path / "out" / "coco_ids.json").read_text())
    assert [c["id"] for c in ids["categories"]] == [3, 7, 12]
    assert ids["images"] == {"images/val/x.png": 101, "images/val/y.png": 205,
                             "images/val/z.png": 309}
    assert "validates on val" in capsys.readouterr().out


def test_coco_second_split_keeps_the_first_splits_report(tmp_path):
    """Two COCO splits converted into one project: each keeps its own report (the second used
    to overwrite the first's, losing its events and source digests)."""
    instances = _coco(tmp_path)
    _convert("coco", instances, tmp_path / "imgs", tmp_path / "out")
    train = tmp_path / "instances_train.json"
    train.write_text(instances.read_text())
    _convert("coco", train, tmp_path / "imgs", tmp_path / "out")
    reports = {split: json.loads((tmp_path / "out" / f"conversion_report_{split}.json")
                                 .read_text()) for split in ("val", "train")}
    assert reports["val"]["options"]["split"] == "val"
    assert reports["train"]["options"]["split"] == "train"
    assert reports["val"]["counts"] == reports["train"]["counts"] != {}
    assert len(reports["val"]["events"]) == len(reports["train"]["events"]) > 0


def test_coco_second_split_with_other_categories_is_refused(tmp_path):
    instances = _coco(tmp_path)
    _convert("coco", instances, tmp_path / "imgs", tmp_path / "out")
    other = json.loads(instances.read_text())
    other["categories"][0]["name"] = "plane"
    (tmp_path / "instances_train.json").write_text(json.dumps(other))
    with pytest.raises(InputError, match="categories differ"):
        _convert("coco", tmp_path / "instances_train.json", tmp_path / "imgs", tmp_path / "out")


def test_coco_round_trip_trains_and_scores_against_the_source_file(tmp_path, capsys):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    instances = _coco(tmp_path)
    data = _convert("coco", instances, tmp_path / "imgs", tmp_path / "out")
    run = run_train(data, tmp_path / "runs", "--epochs", "1", "--img-size", "64")
    weights = run / "weights" / "last.pt"
    test_script.main(test_script.get_args_parser().parse_args(
        ["--weights", str(weights), "--save-json", "--conf-thres", "0.0001", "--batch-size",
         "4"]))
    detections = json.loads(weights.with_suffix(".detections.json").read_text())
    assert detections
    assert {d["image_id"] for d in detections} <= {101, 205, 309}
    assert {d["category_id"] for d in detections} <= {3, 7, 12}
    with contextlib.redirect_stdout(io.StringIO()):
        source = COCO(str(instances))
        coco = COCOeval(source, source.loadRes(str(weights.with_suffix(".detections.json"))),
                        "bbox")
        coco.params.imgIds = [101, 205, 309]
        coco.evaluate()
        coco.accumulate()
        coco.summarize()
    assert all(np.isfinite(coco.stats)) and coco.stats[1] >= 0


def test_pycocotools_with_no_detections_says_why(tmp_path, tiny_data, capsys):
    run = run_train(tiny_data, tmp_path, "--epochs", "1")
    test_script.main(test_script.get_args_parser().parse_args(
        ["--weights", str(run / "weights" / "last.pt"), "--save-json", "--pycocotools",
         "--conf-thres", "1.0", "--batch-size", "4"]))
    assert "no detections above --conf-thres 1.0: pycocotools cannot" in capsys.readouterr().out
