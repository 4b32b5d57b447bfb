"""tools.convert_labels: hand-made VOC and COCO sets with every odd case; nothing is dropped
without a line in the report; the COCO route round-trips its ids through test.py --save-json."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import test as test_script
from tests.helpers import ROOT, run_train
from tools import convert_labels
from utils.base.errors import InputError
from utils.data.conversion_report import REPORT_FILE, summary
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
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
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
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
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


# --- the defects, one test each (written before the fix, each failed on it) -----------

def _run_tool(*argv):
    """The command as a user runs it: its exit status and what it printed."""
    return subprocess.run([sys.executable, "-m", "tools.convert_labels", *map(str, argv)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def _instances(tmp_path, images=None, annotations=None, categories=None, name="val"):
    """A small valid COCO set (x.png 64x48, one cat), with any part replaced."""
    _image(tmp_path / "imgs" / "x.png")
    data = {"images": images if images is not None else
            [{"id": 1, "file_name": "x.png", "width": 64, "height": 48}],
            "annotations": annotations if annotations is not None else
            [{"id": 17, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}],
            "categories": categories if categories is not None else [{"id": 1, "name": "cat"}]}
    path = tmp_path / f"instances_{name}.json"
    path.write_text(json.dumps(data))
    return path


def _rows(label):
    return [line.split() for line in label.read_text().splitlines()]


def test_coco_same_file_name_in_two_folders_keeps_both(tmp_path):
    """1: a/x.png and b/x.png were one project image (the last one's boxes)."""
    _image(tmp_path / "imgs" / "a" / "x.png", seed=1)
    _image(tmp_path / "imgs" / "b" / "x.png", seed=2)
    path = _instances(tmp_path, images=[
        {"id": 1, "file_name": "a/x.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "b/x.png", "width": 64, "height": 48}], annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 32, 24]},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 16, 12]},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [16, 12, 16, 12]}])
    data = _convert("coco", path, tmp_path / "imgs", tmp_path / "out")
    out = tmp_path / "out"
    files = [p.name for p in list_images(load_data_config(data).train)]
    assert sorted(files) == ["x.png", "x.png"]
    assert len(_rows(out / "labels" / "val" / "a" / "x.txt")) == 1
    assert len(_rows(out / "labels" / "val" / "b" / "x.txt")) == 2
    assert (out / "images" / "val" / "b" / "x.png").resolve() == \
        (tmp_path / "imgs" / "b" / "x.png").resolve()
    ids = json.loads((out / "coco_ids.json").read_text())["images"]
    assert ids == {"images/val/a/x.png": 1, "images/val/b/x.png": 2}
    report = json.loads((out / "conversion_report_val.json").read_text())
    assert report["images"] == 2 and report["boxes"] == 3


def _voc_file(folder, stem, objects, size=(64, 48)):
    folder.mkdir(parents=True, exist_ok=True)
    size_xml = "" if size is None else \
        f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
    (folder / f"{stem}.xml").write_text(f"<annotation>{size_xml}{''.join(objects)}</annotation>")


def test_voc_image_is_found_by_its_exact_stem(tmp_path):
    """4: x.xml took x.aug.jpg and left x.jpg out; an id with glob characters was 'missing'."""
    root = tmp_path / "VOC"
    for stem in ("x", "x.aug", "p[br]"):
        _voc_file(root / "Annotations", stem, [_voc_object("cat", (1, 1, 10, 10))])
    _image(root / "JPEGImages" / "x.aug.jpg", seed=1)
    _image(root / "JPEGImages" / "x.jpg", seed=2)
    _image(root / "JPEGImages" / "p[br].JPG", seed=3)
    (root / "JPEGImages" / "x.txt").write_text("x")  # not an image suffix: never taken
    _convert("voc", root, tmp_path / "out")
    out = tmp_path / "out"
    for name in ("x.jpg", "x.aug.jpg", "p[br].JPG"):
        assert (out / "images" / name).resolve() == (root / "JPEGImages" / name).resolve()
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["images"] == 3 and "image left out" not in report["counts"]


def test_an_empty_split_is_warned_about(tmp_path, capsys):
    _voc(tmp_path / "VOC")
    (tmp_path / "VOC" / "ImageSets" / "Main" / "test.txt").write_text("c\n")  # c has no image
    data = _convert("voc", tmp_path / "VOC", tmp_path / "out")
    assert "warning: split test holds no image" in capsys.readouterr().out
    assert load_data_config(data).valid.name == "val.txt"


def test_voc_image_set_ids_with_spaces(tmp_path):
    """16: 'my image' was cut to 'my'; an id line 'x  1' (a per-class style line) is id x."""
    root = tmp_path / "VOC"
    for stem in ("my image", "x"):
        _voc_file(root / "Annotations", stem, [_voc_object("cat", (1, 1, 10, 10))])
        _image(root / "JPEGImages" / f"{stem}.jpg")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("my image\nx  1\n")
    data = _convert("voc", root, tmp_path / "out")
    assert sorted(p.name for p in list_images(load_data_config(data).train)) == \
        ["my image.jpg", "x.jpg"]


def test_train_command_is_shell_quoted(tmp_path, capsys):
    _voc(tmp_path / "VOC")
    data = _convert("voc", tmp_path / "VOC", tmp_path / "my out")
    printed = capsys.readouterr().out
    assert f"python train.py --data {shlex.quote(str(data))}" in printed
    assert shlex.split(printed.split("train with: ", 1)[1].splitlines()[0])[-1] == str(data)


@pytest.mark.parametrize("layout", ["side-by-side", "mixed", "explicit"])
def test_labelimg_layouts_are_read(tmp_path, layout):
    """20: only VOCdevkit's Annotations/ + JPEGImages/ were found."""
    src = tmp_path / "set"
    ann, img = {"side-by-side": (src / "annotations", src / "images"), "mixed": (src, src),
                "explicit": (tmp_path / "xmls", tmp_path / "pics")}[layout]
    for i, stem in enumerate(("a", "b")):
        _voc_file(ann, stem, [_voc_object("cat", (1, 1, 10, 10))])
        _image(img / f"{stem}.png", seed=i)
    extra = ["--annotations", ann, "--images", img] if layout == "explicit" else [src]
    data = _convert("voc", *extra, tmp_path / "out")
    assert sorted(p.name for p in list_images(load_data_config(data).train)) == ["a.png", "b.png"]


def test_val_fraction_is_seeded_and_stable_when_images_are_added(tmp_path):
    """21: without image sets the project validated on its training images."""
    src = tmp_path / "set"
    for i in range(40):
        _voc_file(src / "annotations", f"im{i}", [_voc_object("cat", (1, 1, 10, 10))])
        _image(src / "images" / f"im{i}.png", width=8, height=8, seed=i)

    def split(out, seed=3):
        data = _convert("voc", src, out, "--val-fraction", "0.25", "--seed", seed)
        config = load_data_config(data)
        return ({p.stem for p in list_images(config.train)},
                {p.stem for p in list_images(config.valid)})

    train, val = split(tmp_path / "a")
    assert train | val == {f"im{i}" for i in range(40)} and not train & val
    assert 3 <= len(val) <= 18
    assert split(tmp_path / "b") == (train, val)  # the same seed: the same split
    assert split(tmp_path / "c", seed=4) != (train, val)
    report = json.loads((tmp_path / "a" / REPORT_FILE).read_text())
    assert report["options"]["val_fraction"] == 0.25 and report["options"]["seed"] == 3
    for i in range(40, 60):  # new images never move the old ones
        _voc_file(src / "annotations", f"im{i}", [_voc_object("cat", (1, 1, 10, 10))])
        _image(src / "images" / f"im{i}.png", width=8, height=8, seed=i)
    train2, val2 = split(tmp_path / "d")
    assert train2 & train == train and val2 & val == val


def test_list_files_are_read_by_this_trainer_and_by_ultralytics(tmp_path, monkeypatch):
    """22: the lists held ../images/... lines that ultralytics reads against its working
    folder. Its reader (LoadImagesAndLabels): a line starting with './' is relative to the list
    file's folder; any other line is used as it is."""
    _voc(tmp_path / "VOC")
    data = _convert("voc", tmp_path / "VOC", tmp_path / "out")
    config = load_data_config(data)
    assert config.train == tmp_path / "out" / "train.txt"
    assert config.valid == tmp_path / "out" / "val.txt"
    monkeypatch.chdir(tmp_path / "VOC")  # somewhere else
    for spec in (config.train, config.valid):
        lines = spec.read_text().strip().splitlines()
        assert all(line.startswith("./images/") for line in lines)
        parent = str(spec.parent) + os.sep
        ultralytics = [x.replace("./", parent, 1) if x.startswith("./") else x for x in lines]
        ours = [str(p) for p in list_images(spec)]
        assert [os.path.normpath(p) for p in ultralytics] == [os.path.normpath(p) for p in ours]
        assert all(Path(p).is_file() for p in ultralytics)
        # ultralytics' label path: the last /images/ replaced with /labels/
        for image in ultralytics:
            label = "/labels/".join(image.rsplit("/images/", 1)).rsplit(".", 1)[0] + ".txt"
            assert Path(label).is_file() and Path(label) == label_path_for(Path(image))


def test_voc_degenerate_boxes_are_reported(tmp_path, capsys):
    """28: a point box (xmin = xmax, ymin = ymax) became a silent 1-pixel box."""
    root = tmp_path / "VOC"
    _voc_file(root / "Annotations", "x", [_voc_object("cat", (5, 5, 5, 5)),
                                          _voc_object("cat", (5, 5, 5, 9)),
                                          _voc_object("cat", (1, 1, 10, 10))])
    _image(root / "JPEGImages" / "x.jpg")
    _convert("voc", root, tmp_path / "kept")  # cat is class 7 of VOC's 20
    report = json.loads((tmp_path / "kept" / REPORT_FILE).read_text())
    assert report["counts"] == {"degenerate kept": 2} and report["boxes"] == 3
    events = "\n".join(report["events"])
    assert "x.xml: object 1 (cat): degenerate kept: a point" in events
    assert "x.xml: object 2 (cat): degenerate kept: zero width" in events
    np.testing.assert_allclose(np.array(_rows(tmp_path / "kept" / "labels" / "x.txt"),
                                        dtype=float)[0], [7, 4.5 / 64, 4.5 / 48, 1 / 64, 1 / 48],
                               atol=1e-6)
    _convert("voc", root, tmp_path / "dropped", "--drop-degenerate")
    report = json.loads((tmp_path / "dropped" / REPORT_FILE).read_text())
    assert report["counts"] == {"dropped": 2} and report["boxes"] == 1
    assert "object 1 (cat): dropped: degenerate: a point" in "\n".join(report["events"])
    with pytest.raises(SystemExit):
        convert_labels.get_args_parser().parse_args(["voc", "--help"])
    assert "--drop-degenerate" in capsys.readouterr().out


def test_reconverting_replaces_the_project_whole(tmp_path):
    """5: a re-conversion left the old labels of images no longer converted."""
    _voc(tmp_path / "VOC")
    _convert("voc", tmp_path / "VOC", tmp_path / "out")
    (tmp_path / "VOC" / "Annotations" / "a.xml").unlink()
    (tmp_path / "VOC" / "ImageSets" / "Main" / "train.txt").write_text("c\n")
    _convert("voc", tmp_path / "VOC", tmp_path / "out", "--keep-difficult")
    assert not (tmp_path / "out" / "labels" / "a.txt").exists()
    assert not (tmp_path / "out" / "images" / "a.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VOC", "out"]


def test_coco_reconverting_a_split_replaces_only_that_split(tmp_path):
    instances = _coco(tmp_path)
    _convert("coco", instances, tmp_path / "imgs", tmp_path / "out")
    train = tmp_path / "instances_train.json"
    train.write_text(instances.read_text())
    _convert("coco", train, tmp_path / "imgs", tmp_path / "out")
    data = json.loads(train.read_text())
    data["images"] = [i for i in data["images"] if i["id"] != 101]
    train.write_text(json.dumps(data))
    _convert("coco", train, tmp_path / "imgs", tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["y.png", "z.png"]
    assert sorted(p.name for p in (out / "labels" / "train").iterdir()) == ["y.txt", "z.txt"]
    assert sorted(p.name for p in (out / "images" / "val").iterdir()) == \
        ["x.png", "y.png", "z.png"]
    ids = json.loads((out / "coco_ids.json").read_text())["images"]
    assert sorted(ids) == ["images/train/y.png", "images/train/z.png", "images/val/x.png",
                           "images/val/y.png", "images/val/z.png"]
    config = load_data_config(out / "out.data")
    assert config.train.name == "train.txt" and config.valid.name == "val.txt"


def test_a_project_with_the_older_lists_folder_gets_root_lists(tmp_path):
    """A COCO split added to a project written before the lists moved: its lists/val.txt
    ('../images/...' lines) becomes val.txt ('./images/...') beside the new train.txt.
    (Written with the fix, for the migration it brings.)"""
    instances = _coco(tmp_path)
    _convert("coco", instances, tmp_path / "imgs", tmp_path / "out")
    out = tmp_path / "out"
    (out / "lists").mkdir()
    (out / "lists" / "val.txt").write_text((out / "val.txt").read_text().replace("./", "../"))
    (out / "val.txt").unlink()
    train = tmp_path / "instances_train.json"
    train.write_text(instances.read_text())
    data = _convert("coco", train, tmp_path / "imgs", out)
    assert not (out / "lists").exists()
    assert (out / "val.txt").read_text().splitlines()[0] == "./images/val/x.png"
    config = load_data_config(data)
    assert [p.name for p in list_images(config.valid)] == ["x.png", "y.png", "z.png"]
    assert config.train == out / "train.txt"


def test_the_summary_counts_in_words():
    report = {"images": 1, "boxes": 1, "classes": 1, "boxes_per_class": {"raccoon": 1},
              "splits": {"all": 1}, "counts": {}, "events": [], "options": {"format": "voc"}}
    first = summary(report, Path("out")).splitlines()[0]
    assert first.startswith("1 image, 1 box, 1 class (raccoon 1)")


def test_a_class_with_one_box_is_named():
    report = {"images": 9, "boxes": 9, "classes": 3,
              "boxes_per_class": {"pawn": 7, "bishop": 1, "king": 1},
              "splits": {"all": 9}, "counts": {}, "events": [], "options": {"format": "voc"}}
    lines = summary(report, Path("out")).splitlines()
    assert "one box only of 2 classes: bishop, king (too few to learn from; its AP, if it is " \
           "in the validation split, is one box's)" in lines
    report["boxes_per_class"] = {"pawn": 7, "bishop": 2, "king": 0}
    assert not any(line.startswith("one box only") for line in summary(report, Path("out"))
                   .splitlines())


def test_a_class_without_boxes_is_named(tmp_path):
    """A COCO export may list categories no box uses (Roboflow adds a parent category): they
    stay classes (the model gets outputs for them), so the summary names them."""
    path = _instances(tmp_path, categories=[{"id": 0, "name": "pieces"},
                                            {"id": 1, "name": "cat"}])
    done = _run_tool("coco", path, tmp_path / "imgs", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "no box of 1 class: pieces" in done.stdout
    plain = _run_tool("coco", _instances(tmp_path, name="train"), tmp_path / "imgs",
                      tmp_path / "out2", "--split", "train")
    assert plain.returncode == 0 and "no box of" not in plain.stdout
