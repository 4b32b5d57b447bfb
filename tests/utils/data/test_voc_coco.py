"""utils.data.voc_reader, coco_reader and label_conversion, the readers behind
tools.convert_labels (whose tests convert whole sets): the small decisions, one at a time."""
from __future__ import annotations

import pytest

from utils.base.errors import InputError
from utils.data.label_conversion import is_class_name, split_problem
from utils.data.voc_reader import _image_set_id, find_voc_source, image_index, in_val


def test_val_membership_depends_on_seed_and_id_only():
    ids = [f"img{i}" for i in range(2000)]
    val = {i for i in ids if in_val(i, 0.2, seed=7)}
    assert 0.17 < len(val) / len(ids) < 0.23
    assert val == {i for i in ids if in_val(i, 0.2, seed=7)}
    assert val != {i for i in ids if in_val(i, 0.2, seed=8)}
    assert val <= {i for i in ids if in_val(i, 0.3, seed=7)}  # a larger fraction only adds


@pytest.mark.parametrize("name, ok", [("cat", True), (" traffic light ", True), ("", False),
                                      ("   ", False), ("a\nb", False), ("a\u2028b", False),
                                      (None, False), (3, False)])
def test_class_names_the_names_file_can_hold(name, ok):
    assert is_class_name(name) is ok


@pytest.mark.parametrize("split, ok", [("train", True), ("val2017", True), ("my-set_1.b", True),
                                       ("images", False), ("labels", False), ("", False),
                                       ("a/b", False), (".hidden", False), ("x y", False)])
def test_split_names(split, ok):
    assert (split_problem(split) is None) is ok


def test_images_are_found_by_exact_stem(tmp_path):
    for name in ("x.jpg", "x.aug.JPG", "p[br].png", "x.txt", "y.jpeg.bak"):
        (tmp_path / name).write_bytes(b"")
    index = image_index(tmp_path)
    assert {k: [p.name for p in v] for k, v in index.items()} == {
        "x": ["x.jpg"], "x.aug": ["x.aug.JPG"], "p[br]": ["p[br].png"]}


def test_image_set_lines(tmp_path):
    for stem in ("my image", "x", "y 1"):
        (tmp_path / f"{stem}.xml").write_text("<annotation/>")
    assert _image_set_id("my image", tmp_path) == "my image"
    assert _image_set_id("x  1", tmp_path) == "x"
    assert _image_set_id("x -1", tmp_path) == "x"
    assert _image_set_id("y 1", tmp_path) == "y 1"  # the whole line names an annotation
    assert _image_set_id("gone 1", tmp_path) == "gone 1"  # reported missing as written


def test_layouts_are_told_apart(tmp_path):
    voc = tmp_path / "voc"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main", "labels"):
        (voc / folder).mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text("<annotation/>")
    (voc / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # YOLO labels: not xml
    source = find_voc_source(voc, None, None)
    assert (source.annotations.name, source.images.name, source.layout) == \
        ("Annotations", "JPEGImages", "voc")
    assert source.image_sets == voc / "ImageSets" / "Main"
    both = tmp_path / "both"
    for folder in ("annotations", "xml"):
        (both / folder).mkdir(parents=True)
        (both / folder / "a.xml").write_text("<annotation/>")
    with pytest.raises(InputError, match="both annotations/ and xml/ could be"):
        find_voc_source(both, None, None)
    with pytest.raises(InputError, match="together"):
        find_voc_source(None, tmp_path, None)
