"""Read Pascal VOC / labelImg xml into a :class:`~utils.data.label_conversion.Conversion`.

VOC pixels are 1-based and inclusive (xmin=1..xmax=W covers [0, W]), so a box with xmin = xmax
is one pixel wide ("degenerate": kept and reported, or dropped on request).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from utils.base.errors import InputError
from utils.data.data_config import IMAGE_SUFFIXES, read_names
from utils.data.label_conversion import (
    Conversion,
    is_class_name,
    shown,
    split_problem,
    yolo_row,
)

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
# Where VOCdevkit and labelImg-style sets keep their files, in the order they are tried.
ANNOTATION_DIRS = ("Annotations", "annotations", "xml", "xmls", "labels-xml", "labels_xml",
                   "labels")
IMAGE_DIRS = ("JPEGImages", "images", "Images", "imgs", "img")


@dataclass
class VocSource:
    """Where a VOC-style set keeps its xml files, its images and (optionally) its image sets."""
    annotations: Path
    images: Path
    image_sets: Path | None
    layout: str  # "voc" (VOCdevkit), "side by side", "mixed" (one folder) or "explicit"


def _holds(folder: Path, suffixes: tuple[str, ...]) -> bool:
    return any(p.suffix.lower() in suffixes for p in folder.iterdir() if p.is_file())


def _one_folder(root: Path, names: tuple[str, ...], suffixes: tuple[str, ...],
                strict: bool) -> Path | None:
    """The folder among ``names`` under root holding files of ``suffixes`` (strict: only such;
    else any existing one, those holding such files first); two candidates are refused."""
    found = []
    for name in names:
        path = root / name
        if path.is_dir() and not any(path.samefile(f) for f in found):
            found.append(path)
    holding = [f for f in found if _holds(f, suffixes)]
    found = holding if strict or holding else found
    if len(found) > 1:
        raise InputError(f"both {found[0].name}/ and {found[1].name}/ could be the folder of "
                         "the set: name them with --annotations DIR --images DIR", root)
    return found[0] if found else None


def find_voc_source(root: Path | None, annotations: Path | None,
                    images: Path | None) -> VocSource:
    """The layout of a VOC-style set: VOCdevkit (Annotations/, JPEGImages/, ImageSets/Main/),
    labelImg's annotation and image folders side by side, xml files and images mixed in one
    folder, or the folders given as --annotations and --images."""
    if (annotations is None) != (images is None):
        raise InputError("give --annotations DIR and --images DIR together")
    image_sets = root / "ImageSets" / "Main" if root is not None else None
    image_sets = image_sets if image_sets is not None and image_sets.is_dir() else None
    if annotations is not None:
        for option, folder in (("--annotations", annotations), ("--images", images)):
            if not folder.is_dir():
                raise InputError(f"{option}: not a folder", folder)
        return VocSource(annotations, images, image_sets, "explicit")
    if root is None:
        raise InputError("give a VOC root, or --annotations DIR and --images DIR")
    if not root.is_dir():
        raise InputError("not a folder (expected a VOC root such as VOC2007, or a folder of "
                         "annotations and images)", root)
    found = _one_folder(root, ANNOTATION_DIRS, (".xml",), strict=True)
    if found is None and _holds(root, (".xml",)):
        found = root
    if found is None:
        raise InputError(
            "no VOC or labelImg layout found: looked for an annotation folder ("
            + ", ".join(f"{d}/" for d in ANNOTATION_DIRS) + ") holding .xml files beside an "
            "image folder (" + ", ".join(f"{d}/" for d in IMAGE_DIRS) + "), and for .xml files "
            "in the folder itself; or name the folders: --annotations DIR --images DIR", root)
    pictures = _one_folder(root, IMAGE_DIRS, IMAGE_SUFFIXES, strict=False) or found
    layout = ("voc" if (found.name, pictures.name) == ("Annotations", "JPEGImages") else
              "mixed" if pictures == found else "side by side")
    return VocSource(found, pictures, image_sets, layout)


def _image_set_id(line: str, annotations: Path) -> str:
    """The image id of an image-set line: the whole line when an annotation has that name
    (ids may hold spaces), else 'id flag' as in VOC's per-class files ('x  1', 'x -1')."""
    text = line.strip()
    found = re.fullmatch(r"(.+?)\s+(-1|0|1)", text)
    if found and not (annotations / f"{text}.xml").is_file() and \
            (annotations / f"{found[1]}.xml").is_file():
        return found[1]
    return text


def in_val(image_id: str, fraction: float, seed: int) -> bool:
    """Seeded membership of the validation split from the id alone, so adding images never
    moves an existing one: sha256("seed:id") read as a number in [0, 1) below ``fraction``."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def voc_splits(source: VocSource, val_fraction: float | None, seed: int
               ) -> dict[str, list[str]]:
    """Image ids per split: ImageSets/Main/<split>.txt (not the per-class files), else train
    and val by ``val_fraction``, else every annotation as split 'all'."""
    splits = {}
    for path in sorted(source.image_sets.glob("*.txt")) if source.image_sets else []:
        if "_" in path.stem:
            continue
        if problem := split_problem(path.stem):
            raise InputError(f"split name {path.stem!r}: {problem}", path)
        lines = read_names(path)  # BOM and CRLF as any editor writes them
        splits[path.stem] = list(dict.fromkeys(_image_set_id(x, source.annotations)
                                               for x in lines))
    if splits and val_fraction is not None:
        raise InputError(f"--val-fraction: the set has its own splits ({', '.join(splits)}): "
                         "drop --val-fraction to use them", source.image_sets)
    if splits:
        return splits
    ids = sorted(p.stem for p in source.annotations.glob("*.xml"))
    if val_fraction is None:
        return {"all": ids}
    val = {i for i in ids if in_val(i, val_fraction, seed)}
    return {"train": [i for i in ids if i not in val], "val": [i for i in ids if i in val]}


def _text(node, tag: str, xml: Path, where: str = "") -> str:
    found = node.find(tag)
    if found is None or found.text is None:
        raise InputError(f"{where}no <{tag}> in <{node.tag}>", xml)
    return found.text


def _number(node, tag: str, xml: Path, where: str) -> float:
    text = _text(node, tag, xml, where).strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{where}<{tag}> must be a number, got {shown(text)}", xml)
    return value


def voc_objects(xml: Path) -> tuple[tuple[int, int] | None, list[tuple[str, tuple, bool]]]:
    """(width, height) from <size> (None when absent or zero) and (name, (xmin, ymin, xmax,
    ymax) as written, 1-based inclusive, difficult) of each <object>."""
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as err:
        raise InputError(f"not valid XML ({err})", xml) from None
    size = root.find("size")
    wh = None
    if size is not None:
        wh = tuple(int(_number(size, t, xml, "<size>: ")) for t in ("width", "height"))
        wh = wh if min(wh) > 0 else None
    objects = []
    for number, obj in enumerate(root.findall("object"), start=1):
        raw = _text(obj, "name", xml, f"object {number}: ")
        if not is_class_name(raw):
            raise InputError(f"object {number}: <name> must be a non-empty class name on one "
                             f"line, got {shown(raw)}", xml)
        where = f"object {number} ({raw.strip()}): "
        bnd = obj.find("bndbox")
        if bnd is None:
            raise InputError(f"{where}no <bndbox>", xml)
        box = tuple(_number(bnd, t, xml, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = obj.find("difficult")
        objects.append((raw.strip(), box,
                        difficult is not None and (difficult.text or "0").strip() == "1"))
    return wh, objects


def class_order(found: set[str], names_file: str | None) -> list[str]:
    """--names' order; else VOC's 20 when every name is VOC's, else sorted."""
    if names_file:
        names = read_names(Path(names_file))
        repeated = [n for n, k in Counter(names).items() if k > 1]
        if repeated:
            raise InputError(f"class names repeated: {', '.join(repeated)}", names_file)
        return names
    if found <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    return sorted(found)


def image_index(folder: Path) -> dict[str, list[Path]]:
    """The images of a folder by exact stem (no glob: '[br]' is a name, not a pattern)."""
    index: dict[str, list[Path]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            path = Path(entry.path)
            if path.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                index.setdefault(path.stem, []).append(path)
    return {stem: sorted(paths) for stem, paths in index.items()}


def _degenerate(box: tuple) -> str | None:
    """How a VOC box (as written) has no extent of its own, or None."""
    x1, y1, x2, y2 = box
    if x1 == x2 and y1 == y2:
        return "a point (xmin = xmax, ymin = ymax)"
    if x1 == x2 or y1 == y2:
        return "zero width (xmin = xmax)" if x1 == x2 else "zero height (ymin = ymax)"
    return None


def _voc_row(cls: int, box: tuple, size: tuple[int, int], where: str, conv: Conversion,
             drop_degenerate: bool) -> str | None:
    """The YOLO row of a VOC box: 1-based inclusive pixels -> [xmin - 1, xmax]."""
    x1, y1, x2, y2 = box
    degenerate = _degenerate(box) if x1 <= x2 and y1 <= y2 else None
    if degenerate and drop_degenerate:
        conv.note(where, "dropped", f"degenerate: {degenerate}: {box} (--drop-degenerate)")
        return None
    row = yolo_row(cls, (x1 - 1, y1 - 1, x2, y2), size, where, conv)
    if row and degenerate:
        conv.note(where, "degenerate kept", f"{degenerate}: {box} is 1 pixel across in VOC's "
                  "inclusive reading (--drop-degenerate drops it)")
    return row


def convert_voc(source: VocSource, names_file: str | None, keep_difficult: bool,
                drop_degenerate: bool = False, val_fraction: float | None = None,
                seed: int = 0) -> Conversion:
    """Every image of the splits with its xml and its image file (same stem, an image suffix)."""
    splits = voc_splits(source, val_fraction, seed)
    ids = sorted({i for members in splits.values() for i in members})
    xmls = {i: source.annotations / f"{i}.xml" for i in ids}
    parsed = {i: voc_objects(xmls[i]) if xmls[i].is_file() else None for i in ids}
    conv = Conversion(class_order({n for p in parsed.values() if p for n, _, _ in p[1]},
                                  names_file))
    index = {name: i for i, name in enumerate(conv.names)}
    images = image_index(source.images)
    converted = {}  # image id -> "images/..." of the images kept
    for image_id, item in parsed.items():
        xml, found = xmls[image_id], images.get(image_id, [])
        if len(found) > 1:
            raise InputError(f"two images for one annotation: {found[0]} and {found[1]} (keep "
                             "one)", xml)
        if item is None or not found:
            conv.note(str(xml if item is None else source.images / image_id), "image left out",
                      "no annotation file" if item is None else "image file missing")
            continue
        size = item[0] or _image_size(found[0], conv)
        if size is None:
            continue
        rows = []
        for number, (name, box, difficult) in enumerate(item[1], start=1):
            where = f"{xml}: object {number} ({name})"
            if name not in index:
                conv.note(where, "refused", "unknown class (not in the names file)")
            elif difficult and not keep_difficult:
                conv.note(where, "left out", "difficult (--keep-difficult keeps it)")
            elif row := _voc_row(index[name], box, size, where, conv, drop_degenerate):
                rows.append(row)
        rel = f"images/{found[0].name}"
        conv.labels[rel], conv.sources[rel], converted[image_id] = rows, found[0], rel
    for split, members in splits.items():
        conv.splits[split] = [converted[i] for i in members if i in converted]
    if not conv.labels:
        has_xml = any(p is not None for p in parsed.values())
        raise InputError(
            f"no image kept: none of the {len(ids)} images of the set has its image file here "
            f"(an image is named as its annotation, ending in {', '.join(IMAGE_SUFFIXES)})"
            if has_xml else f"no image kept: no annotation (.xml) found for the {len(ids)} "
            "images of the set", source.images if has_xml else source.annotations)
    return conv


def _image_size(image: Path, conv: Conversion) -> tuple[int, int] | None:
    import cv2
    img = cv2.imread(str(image))
    if img is None:
        conv.note(str(image), "image left out", "no <size> and OpenCV cannot read the image")
        return None
    return img.shape[1], img.shape[0]
