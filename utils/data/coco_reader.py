"""Read COCO instances json into a :class:`~utils.data.label_conversion.Conversion`. COCO boxes
are x, y, width, height in pixels from 0.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path, PurePosixPath

from utils.base.errors import InputError
from utils.data.label_conversion import (
    RESERVED_FOLDERS,
    Conversion,
    is_class_name,
    shown,
    yolo_row,
)


def read_instances(path: Path) -> dict:
    """A COCO instances file whose 'images', 'annotations' and 'categories' are lists."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"not a COCO instances file ({err})", path) from None
    if not isinstance(data, dict):
        raise InputError(f"not a COCO instances file (expected a JSON object, got "
                         f"{type(data).__name__})", path)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(f"no {key!r} list: not a COCO instances file", path)
        if not isinstance(data[key], list):
            raise InputError(f"{key!r} must be a list, got {shown(data[key])}", path)
    return data


def _id_text(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _entries(items: list, kind: str, path: Path, keys: tuple[str, ...], with_id: bool = True):
    """(where, entry) of each entry, checked to be an object holding ``keys`` (and, with_id,
    an integer or string 'id'); where is '<kind> <id>', or '<kind> entry <n>' (1-based)."""
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise InputError(f"{kind} entry {number} must be an object, got {shown(item)}", path)
        where = f"{kind} entry {number}"
        if with_id and "id" not in item:
            raise InputError(f"{where}: no 'id'", path)
        if with_id and (isinstance(item["id"], bool) or not isinstance(item["id"], (int, str))):
            raise InputError(f"{where}: 'id' must be an integer or a string, got "
                             f"{shown(item['id'])}", path)
        where = f"{kind} {_id_text(item['id'])}" if "id" in item else where
        for key in keys:
            if key not in item:
                raise InputError(f"{where}: no {key!r}", path)
        yield where, item


def _one_kind(ids: list, what: str, path: Path) -> None:
    """Ids all integers or all strings: mixed, they cannot be ordered (and are a typo)."""
    ints = [i for i in ids if isinstance(i, int)]
    strings = [i for i in ids if isinstance(i, str)]
    if ints and strings:
        raise InputError(f"{what} mix integers and strings: {ints[0]!r} and {strings[0]!r}",
                         path)


def coco_class_order(categories: list, path: Path) -> tuple[list[str], list]:
    """(names, source ids) by category id: a stable order whatever the file's order."""
    by_id = {}
    for where, cat in _entries(categories, "category", path, ("name",)):
        if not is_class_name(cat["name"]):
            raise InputError(f"{where}: 'name' must be a non-empty string on one line, got "
                             f"{shown(cat['name'])}", path)
        if cat["id"] in by_id:
            raise InputError(f"category id {_id_text(cat['id'])} repeated: "
                             f"{by_id[cat['id']]!r} and {cat['name'].strip()!r}", path)
        by_id[cat["id"]] = cat["name"].strip()
    _one_kind(list(by_id), "category ids", path)
    ids = sorted(by_id)
    names = [by_id[i] for i in ids]
    repeated = [n for n, k in Counter(names).items() if k > 1]
    if repeated:
        raise InputError(f"category names repeated: {', '.join(repeated)}", path)
    return names, ids


def _file_name(where: str, value, path: Path) -> PurePosixPath:
    """An image's file_name as a relative path inside the image folder, kept in the project."""
    name = PurePosixPath(value) if isinstance(value, str) and value.strip() else None
    if name is None or name.is_absolute() or ".." in name.parts or not name.parts:
        raise InputError(f"{where}: 'file_name' must be a relative path inside the image "
                         f"folder, got {shown(value)}", path)
    if set(name.parts[:-1]) & set(RESERVED_FOLDERS):
        raise InputError(f"{where}: file_name {value!r} has a folder named 'images' or "
                         "'labels': the trainer finds a label by replacing the last 'images' "
                         "folder of an image's path with 'labels'", path)
    return name


def coco_images(images: list, path: Path, split: str) -> list[dict]:
    """The images checked (id, file_name, width, height), each with its project path 'rel'
    (images/<split>/<file_name>, sub-folders kept), sorted by id."""
    by_id, by_name, by_label = {}, {}, {}
    for where, img in _entries(images, "image", path, ("file_name", "width", "height")):
        for key in ("width", "height"):
            value = img[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value <= 0:
                raise InputError(f"{where}: {key!r} must be a positive number, got "
                                 f"{shown(value)}", path)
        name = _file_name(where, img["file_name"], path)
        if img["id"] in by_id:
            raise InputError(f"image id {_id_text(img['id'])} repeated: "
                             f"{by_id[img['id']]['file_name']!r} and {img['file_name']!r}", path)
        if str(name) in by_name:
            raise InputError(f"images {_id_text(by_name[str(name)])} and {_id_text(img['id'])} "
                             f"both have file_name {str(name)!r}", path)
        label = f"labels/{split}/{name.with_suffix('.txt')}"
        if label in by_label:
            other = by_id[by_label[label]]
            raise InputError(f"images {_id_text(other['id'])} ({other['file_name']!r}) and "
                             f"{_id_text(img['id'])} ({img['file_name']!r}) would share the "
                             f"label file {label}", path)
        by_id[img["id"]] = {**img, "rel": f"images/{split}/{name}"}
        by_name[str(name)], by_label[label] = img["id"], img["id"]
    _one_kind(list(by_id), "image ids", path)
    return [by_id[i] for i in sorted(by_id)]


def _bbox(where: str, ann: dict, path: Path) -> tuple[float, float, float, float]:
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or \
            any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in bbox):
        raise InputError(f"{where}: bbox must be 4 numbers, got {shown(bbox)}", path)
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h


def convert_coco(instances: Path, images: Path, split: str, keep_crowd: bool
                 ) -> tuple[Conversion, dict]:
    """The conversion and the id map (source category ids in class order, and each kept image's
    source id by its path in the project)."""
    data = read_instances(instances)
    names, cat_ids = coco_class_order(data["categories"], instances)
    conv = Conversion(names)
    index = {cid: i for i, cid in enumerate(cat_ids)}
    entries = coco_images(data["images"], instances, split)
    by_image: dict = {}
    for where, ann in _entries(data["annotations"], "annotation", instances,
                               ("image_id", "category_id", "bbox"), with_id=False):
        box = _bbox(where, ann, instances)
        by_image.setdefault(ann["image_id"], []).append((where, ann, box))
    known = {img["id"] for img in entries}
    for image_id in sorted(set(by_image) - known, key=str):
        conv.note(f"{instances}: annotations of image_id {image_id}", "refused",
                  f"{len(by_image[image_id])} boxes of an image not in 'images'")
    ids = {}
    for img in entries:
        source = images / img["file_name"]
        if not source.is_file():
            conv.note(str(source), "image left out", "image file missing")
            continue
        rows = []
        for where, ann, box in by_image.get(img["id"], []):
            where = f"{instances}: {where} (image {img['file_name']})"
            if ann["category_id"] not in index:
                conv.note(where, "refused", f"unknown category_id {ann['category_id']}")
            elif ann.get("iscrowd") and not keep_crowd:
                conv.note(where, "left out", "iscrowd (--keep-crowd keeps it)")
            elif row := yolo_row(index[ann["category_id"]], box,
                                 (int(img["width"]), int(img["height"])), where, conv):
                rows.append(row)
        conv.labels[img["rel"]], conv.sources[img["rel"]] = rows, source
        ids[img["rel"]] = img["id"]
    if not conv.labels:
        raise InputError(f"no image kept: none of the {len(entries)} images {instances.name} "
                         "lists is in this folder", images)
    conv.splits[split] = list(conv.labels)
    return conv, {"categories": [{"id": c, "name": n} for c, n in zip(cat_ids, names)],
                  "images": ids}
