"""tools.convert_labels on random small VOC and COCO sets: the report counts exactly what the
project holds, and every kept box comes back to its source box, clipped to the image."""
from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tools.test_convert_labels import _convert, _voc_object
from utils.data.data_config import label_path_for, list_images, load_data_config

CLASSES = ("cat", "dog", "bird")  # all three VOC classes: the project gets VOC's 20 in order


@st.composite
def image_sets(draw):
    """Images (name, width, height) with boxes (class, x1, y1, x2, y2 in the source's own
    convention, difficult / crowd flag): outside the image, reversed, zero-area and point boxes
    included."""
    images = []
    names = draw(st.lists(st.tuples(st.sampled_from(["", "a/", "b/"]),
                                    st.sampled_from(["p", "q", "r"])), min_size=1, max_size=4,
                          unique=True))
    for folder, stem in names:
        width, height = draw(st.integers(4, 24)), draw(st.integers(4, 24))
        coord = st.integers(-4, 30)
        boxes = draw(st.lists(st.tuples(st.sampled_from(CLASSES), coord, coord, coord, coord,
                                        st.booleans()), max_size=5))
        images.append((folder + stem, width, height, boxes))
    return images


def _write_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 127, np.uint8))


def _expected_coco(box, width, height):
    """The kept box in pixels (x1, y1, x2, y2), or None. COCO: x, y, w, h."""
    _, x, y, w, h, crowd = box
    if crowd or w < 0 or h < 0:
        return None
    return _clip((x, y, x + w, y + h), width, height)


def _expected_voc(box, width, height, drop_degenerate):
    """VOC: 1-based inclusive xmin..xmax covers pixels [xmin - 1, xmax]."""
    _, x1, y1, x2, y2, difficult = box
    if difficult or x1 > x2 or y1 > y2 or (drop_degenerate and (x1 == x2 or y1 == y2)):
        return None
    return _clip((x1 - 1, y1 - 1, x2, y2), width, height)


def _clip(box, width, height):
    x1, y1, x2, y2 = (min(max(v, 0), limit) for v, limit in zip(box, (width, height) * 2))
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def _write_coco(src: Path, images) -> list[str]:
    cats = [{"id": 10 + i, "name": n} for i, n in enumerate(CLASSES)]
    data = {"images": [], "annotations": [], "categories": cats}
    for image_id, (name, width, height, boxes) in enumerate(images, start=100):
        _write_image(src / "imgs" / f"{name}.png", width, height)
        data["images"].append({"id": image_id, "file_name": f"{name}.png", "width": width,
                               "height": height})
        for cls, x, y, w, h, crowd in boxes:
            data["annotations"].append({"id": len(data["annotations"]) + 1,
                                        "image_id": image_id, "bbox": [x, y, w, h],
                                        "category_id": 10 + CLASSES.index(cls),
                                        "iscrowd": int(crowd)})
    (src / "instances_set.json").write_text(json.dumps(data))
    return list(CLASSES)


def _write_voc(src: Path, images) -> None:
    """A labelImg folder: flat, so the folders of the names become part of the stem."""
    for name, width, height, boxes in images:
        stem = name.replace("/", "_")
        _write_image(src / "images" / f"{stem}.png", width, height)
        objects = "".join(_voc_object(c, (x1, y1, x2, y2), int(d))
                          for c, x1, y1, x2, y2, d in boxes)
        (src / "annotations").mkdir(parents=True, exist_ok=True)
        (src / "annotations" / f"{stem}.xml").write_text(
            f"<annotation><size><width>{width}</width><height>{height}</height></size>"
            f"{objects}</annotation>")


def _project_boxes(label: Path, width: int, height: int, names: list[str]) -> list[tuple]:
    """The label file's rows as (class name, x1, y1, x2, y2) pixels."""
    rows = []
    for line in label.read_text().splitlines():
        cls, x, y, w, h = line.split()
        x, y, w, h = float(x) * width, float(y) * height, float(w) * width, float(h) * height
        rows.append((names[int(cls)], x - w / 2, y - h / 2, x + w / 2, y + h / 2))
    return sorted(rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images=image_sets(), fmt=st.sampled_from(["coco", "voc"]), drop=st.booleans())
def test_report_counts_what_the_project_holds(images, fmt, drop):
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        if fmt == "coco":
            _write_coco(src, images)
            argv = ["coco", src / "instances_set.json", src / "imgs", out]
        else:
            _write_voc(src, images)
            argv = ["voc", src, out] + (["--drop-degenerate"] if drop else [])
        data = _convert(*argv)
        config = load_data_config(data)
        report = json.loads(next(out.glob("conversion_report*.json")).read_text())
        files = list_images(config.train)
        assert sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png")) \
            == sorted(p.relative_to(out).as_posix() for p in files)
        assert report["images"] == len(files) == len(list((out / "labels").rglob("*.txt")))
        ids = json.loads((out / "coco_ids.json").read_text())["images"] if fmt == "coco" else {}
        per_class, boxes, degenerate = Counter(), 0, 0
        for index, (name, width, height, source_boxes) in enumerate(images):
            project_name = f"images/set/{name}.png" if fmt == "coco" else \
                f"images/{name.replace('/', '_')}.png"
            image = out / project_name
            assert image.resolve() == (src / ("imgs" if fmt == "coco" else "images") /
                                       Path(project_name).relative_to(
                                           "images/set" if fmt == "coco" else "images")).resolve()
            if fmt == "coco":
                assert ids[project_name] == 100 + index
            expected = []
            for box in source_boxes:
                kept = _expected_coco(box, width, height) if fmt == "coco" else \
                    _expected_voc(box, width, height, drop)
                if kept is not None:
                    expected.append((box[0], *kept))
                    degenerate += fmt == "voc" and (box[1] == box[3] or box[2] == box[4])
            got = _project_boxes(label_path_for(image), width, height, config.names)
            assert [g[0] for g in got] == [e[0] for e in sorted(expected)]
            scale = np.array([width, height, width, height], dtype=float)
            np.testing.assert_allclose(np.array([g[1:] for g in got]).reshape(-1, 4) / scale,
                                       np.array([e[1:] for e in sorted(expected)],
                                                dtype=float).reshape(-1, 4) / scale,
                                       rtol=0, atol=1e-5)
            per_class.update(e[0] for e in expected)
            boxes += len(expected)
        assert report["boxes"] == boxes
        assert report["boxes_per_class"] == {n: per_class[n] for n in config.names}
        assert report["counts"].get("degenerate kept", 0) == degenerate
        if fmt == "coco":
            assert len(ids) == len(images)
