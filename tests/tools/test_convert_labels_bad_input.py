"""tools.convert_labels refuses bad input before writing anything: an InputError naming the
file, the entry (annotation, image, category or object) and what was expected; as a command,
the message and exit status 2. Each of these used to be a traceback or a wrong project."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.tools.test_convert_labels import (
    _convert,
    _image,
    _instances,
    _run_tool,
    _voc,
    _voc_file,
    _voc_object,
)
from utils.base.errors import InputError


@pytest.mark.parametrize("file_name, message", [
    ("../x.png", "must be a relative path inside the image folder"),
    ("/abs/x.png", "must be a relative path inside the image folder"),
    ("images/x.png", "has a folder named 'images' or 'labels'"),
])
def test_coco_file_name_that_cannot_be_placed_is_refused(tmp_path, file_name, message):
    path = _instances(tmp_path, images=[
        {"id": 1, "file_name": file_name, "width": 64, "height": 48}], annotations=[])
    with pytest.raises(InputError, match=message) as err:
        _convert("coco", path, tmp_path / "imgs", tmp_path / "out")
    assert str(err.value).startswith(f"{path}: image 1: ")


def test_coco_two_images_sharing_a_label_file_are_refused(tmp_path):
    _image(tmp_path / "imgs" / "x.jpg")
    path = _instances(tmp_path, images=[
        {"id": 1, "file_name": "x.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "x.jpg", "width": 64, "height": 48}], annotations=[])
    with pytest.raises(InputError, match=r"images 1 \('x.png'\) and 2 \('x.jpg'\) would share "
                                         r"the label file labels/val/x.txt"):
        _convert("coco", path, tmp_path / "imgs", tmp_path / "out")


def test_coco_repeated_image_id_is_refused(tmp_path):
    """2: the annotations of id 1 were copied onto both images."""
    _image(tmp_path / "imgs" / "y.png")
    path = _instances(tmp_path, images=[
        {"id": 1, "file_name": "x.png", "width": 64, "height": 48},
        {"id": 1, "file_name": "y.png", "width": 64, "height": 48}])
    with pytest.raises(InputError, match=r"image id 1 repeated: 'x.png' and 'y.png'"):
        _convert("coco", path, tmp_path / "imgs", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_coco_repeated_category_id_is_refused(tmp_path):
    """3: every box of id 1 went under the last name."""
    path = _instances(tmp_path, categories=[{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}])
    with pytest.raises(InputError, match=r"category id 1 repeated: 'cat' and 'dog'"):
        _convert("coco", path, tmp_path / "imgs", tmp_path / "out")


def test_voc_two_images_with_one_stem_are_refused(tmp_path):
    root = tmp_path / "VOC"
    _voc_file(root / "Annotations", "x", [_voc_object("cat", (1, 1, 10, 10))])
    _image(root / "JPEGImages" / "x.jpg")
    _image(root / "JPEGImages" / "x.PNG")
    with pytest.raises(InputError, match=r"two images for one annotation: .*x\.(PNG|jpg) and "
                                         r".*x\.(PNG|jpg)"):
        _convert("voc", root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_nothing_kept_is_refused_with_exit_2_and_nothing_written(tmp_path):
    """9: a wrong image folder converted to an empty project, exit 0, 'train with ...'."""
    path = _instances(tmp_path)
    (tmp_path / "empty").mkdir()
    result = _run_tool("coco", path, tmp_path / "empty", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert f"error: {tmp_path / 'empty'}: no image kept" in result.stderr
    assert "Traceback" not in result.stderr and "train with" not in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "imgs", path.name]
    _voc(tmp_path / "VOC")
    shutil.rmtree(tmp_path / "VOC" / "JPEGImages")
    (tmp_path / "VOC" / "JPEGImages").mkdir()
    with pytest.raises(InputError, match="no image kept") as err:
        _convert("voc", tmp_path / "VOC", tmp_path / "out")
    assert str(err.value).startswith(str(tmp_path / "VOC" / "JPEGImages"))


BAD_COCO = [
    (lambda d: d["annotations"][0].pop("bbox"), "annotation 17: no 'bbox'"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
     r"annotation 17: bbox must be 4 numbers, got \[1, 2, 3\]"),
    (lambda d: d["annotations"][0].update(bbox=[1, "2", 3, 4]),
     r"annotation 17: bbox must be 4 numbers, got \[1, '2', 3, 4\]"),
    (lambda d: d["annotations"][0].update(bbox=[1, None, 3, 4]),
     r"annotation 17: bbox must be 4 numbers, got \[1, None, 3, 4\]"),
    (lambda d: d["annotations"][0].update(bbox=None), "annotation 17: bbox must be 4 numbers"),
    (lambda d: d["annotations"][0].pop("image_id"), "annotation 17: no 'image_id'"),
    (lambda d: d["annotations"][0].pop("category_id"), "annotation 17: no 'category_id'"),
    (lambda d: d["annotations"].append(5), "annotation entry 2 must be an object, got 5"),
    (lambda d: d["images"][0].pop("id"), "image entry 1: no 'id'"),
    (lambda d: d["images"][0].pop("width"), "image 1: no 'width'"),
    (lambda d: d["images"][0].update(height="tall"),
     "image 1: 'height' must be a positive number, got 'tall'"),
    (lambda d: d["images"][0].pop("file_name"), "image 1: no 'file_name'"),
    (lambda d: d["images"][0].update(id=1.5),
     "image entry 1: 'id' must be an integer or a string, got 1.5"),
    (lambda d: d["categories"][0].pop("name"), "category 1: no 'name'"),
    (lambda d: d["categories"][0].pop("id"), "category entry 1: no 'id'"),
    (lambda d: d.update(images=None), "'images' must be a list, got None"),
    (lambda d: d.update(annotations={}), "'annotations' must be a list, got {}"),
    (lambda d: d.update(categories="cat"), "'categories' must be a list, got 'cat'"),
    (lambda d: d["images"].append({"id": "b", "file_name": "y.png", "width": 1, "height": 1}),
     "image ids mix integers and strings: 1 and 'b'"),
    (lambda d: d["categories"].append({"id": "2", "name": "dog"}),
     "category ids mix integers and strings: 1 and '2'"),
    (lambda d: d["categories"].append({"id": 2, "name": ""}),
     "category 2: 'name' must be a non-empty string on one line, got ''"),
    (lambda d: d["categories"].append({"id": 2, "name": "  "}),
     "category 2: 'name' must be a non-empty string on one line, got '  '"),
    (lambda d: d["categories"].append({"id": 2, "name": "a\nb"}),
     r"category 2: 'name' must be a non-empty string on one line, got 'a\\nb'"),
]


@pytest.mark.parametrize("change, message", BAD_COCO, ids=[m for _, m in BAD_COCO])
def test_coco_bad_entry_is_refused_naming_it(tmp_path, change, message):
    """10, 16: each used to end in a traceback (or in a project the trainer refuses)."""
    path = _instances(tmp_path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message) as err:
        _convert("coco", path, tmp_path / "imgs", tmp_path / "out")
    assert str(err.value).startswith(f"{path}: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("xml, message", [
    ("<size><width>wide</width><height>48</height></size>",
     "<size>: <width> must be a number, got 'wide'"),
    ("<size><width>64</width><height>inf</height></size>",
     "<size>: <height> must be a number, got 'inf'"),
    ("<size><width>64</width><height>48</height></size>" + _voc_object("cat", ("a", 1, 5, 5)),
     r"object 1 \(cat\): <xmin> must be a number, got 'a'"),
    ("<size><width>64</width><height>48</height></size>" + _voc_object(" ", (1, 1, 5, 5)),
     "object 1: <name> must be a non-empty class name on one line, got ' '"),
])
def test_voc_bad_values_are_refused_naming_the_object(tmp_path, xml, message):
    """11, 16: a non-numeric size or coordinate was a traceback; a blank name a blank class."""
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "x.xml").write_text(f"<annotation>{xml}</annotation>")
    _image(root / "JPEGImages" / "x.jpg")
    with pytest.raises(InputError, match=message) as err:
        _convert("voc", root, tmp_path / "out")
    assert str(err.value).startswith(str(root / "Annotations" / "x.xml"))


@pytest.mark.parametrize("split", ["images", "labels", "a/b", "", "x y"])
def test_split_names_the_trainer_cannot_use_are_refused(tmp_path, split):
    """16: --split images wrote labels where the trainer never looks."""
    path = _instances(tmp_path)
    result = _run_tool("coco", path, tmp_path / "imgs", tmp_path / "out", "--split", split)
    assert result.returncode == 2 and f"--split {split!r}" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_no_layout_found_says_what_was_looked_for(tmp_path):
    (tmp_path / "set" / "stuff").mkdir(parents=True)
    with pytest.raises(InputError) as err:
        _convert("voc", tmp_path / "set", tmp_path / "out")
    for looked_for in ("Annotations/", "annotations/", "JPEGImages/", "images/", ".xml files",
                       "--annotations"):
        assert looked_for in str(err.value)


@pytest.mark.parametrize("fraction", ["0", "1", "-0.1", "1.5", "nan"])
def test_val_fraction_outside_0_1_is_refused(tmp_path, fraction):
    _voc(tmp_path / "VOC")
    result = _run_tool("voc", tmp_path / "VOC", tmp_path / "out", "--val-fraction", fraction)
    assert result.returncode == 2
    assert "--val-fraction must be between 0 and 1" in result.stderr


def test_out_folder_that_is_not_a_project_is_refused(tmp_path):
    """Replacing the project must not delete what a user keeps in the folder."""
    _voc(tmp_path / "VOC")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.md").write_text("mine")
    with pytest.raises(InputError, match="not a project this converter wrote"):
        _convert("voc", tmp_path / "VOC", tmp_path / "data")
    _convert("voc", tmp_path / "VOC", tmp_path / "out")
    (tmp_path / "out" / "notes.md").write_text("mine")
    with pytest.raises(InputError, match="notes.md"):
        _convert("voc", tmp_path / "VOC", tmp_path / "out")
    assert (tmp_path / "out" / "notes.md").read_text() == "mine"


def test_sources_inside_the_project_folder_are_refused(tmp_path):
    """The project is replaced whole: its own folder cannot be a source. (Written with the
    fix: replacing the project whole is what made this a danger.)"""
    _voc(tmp_path / "VOC")
    with pytest.raises(InputError, match="are inside the project folder"):
        _convert("voc", tmp_path / "VOC", tmp_path / "VOC")  # OUT = the root
    _convert("voc", tmp_path / "VOC", tmp_path / "out")
    shutil.copytree(tmp_path / "VOC", tmp_path / "out" / "src")
    with pytest.raises(InputError, match="are inside the project folder"):
        _convert("voc", tmp_path / "out" / "src", tmp_path / "out")

