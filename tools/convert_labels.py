"""Convert Pascal VOC or COCO annotations into a YOLO-label project this trainer reads.

    python -m tools.convert_labels voc VOCdevkit/VOC2007 data/voc
    python -m tools.convert_labels coco annotations/instances_val2017.json val2017 data/coco
    python train.py --data data/voc/voc.data --cfg cfg/yolov3-tiny.cfg

Writes OUT/images/ (links to the sources; --copy copies), OUT/labels/ (YOLO rows), OUT/lists/
(one list file per split: VOC's ImageSets/Main/*.txt when present, else "all"; COCO: the
--split name), OUT/<OUT name>.names (VOC: the 20 VOC classes in VOC's order when the names are
VOC's, else sorted; COCO: by category id), OUT/<OUT name>.data (train= the train split, valid=
the val or test split), and OUT/conversion_report.json (a COCO split's:
OUT/conversion_report_<split>.json): counts, every box clipped, dropped or refused with its file
and reason, and the SHA-256 of the sources. COCO conversions also write
OUT/coco_ids.json (source image and category ids), so test.py --save-json writes detections with
the source file's own ids and pycocotools scores them against the original instances file.

Converting, not reading VOC / COCO at training time: the trainer keeps one label reader (with its
checks, caching and input digests), the conversion's decisions are made once and recorded, and the
result is a folder a user can inspect and edit.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from utils.base.errors import InputError, report_input_error
from utils.data.data_config import read_names

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
REPORT_FILE = "conversion_report.json"  # a VOC root's, all its splits at once


def report_file(options: dict) -> str:
    """The report's name: one per COCO split (splits of one project are converted one call
    each, and a later call must not overwrite an earlier one's events), one for a VOC root."""
    return f"conversion_report_{options['split']}.json" if options["format"] == "coco" \
        else REPORT_FILE
COCO_IDS_FILE = "coco_ids.json"
PRINTED_EVENTS = 50


@dataclass
class Conversion:
    """What a conversion did: labels per image, and every change or refusal with its reason."""
    names: list[str]
    labels: dict[str, list[str]] = field(default_factory=dict)  # image rel path -> YOLO rows
    sources: dict[str, Path] = field(default_factory=dict)  # image rel path -> source image
    splits: dict[str, list[str]] = field(default_factory=dict)  # split -> image rel paths
    events: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    per_class: Counter = field(default_factory=Counter)

    def note(self, where: str, kind: str, reason: str) -> None:
        self.counts[kind] += 1
        self.events.append(f"{where}: {kind}: {reason}")


def yolo_row(cls: int, box: tuple[float, float, float, float], size: tuple[int, int],
             where: str, conv: Conversion) -> str | None:
    """A YOLO row for an xyxy pixel box in an image of ``size`` (width, height), clipped to the
    image (said), or None for a box refused (xmin > xmax) or dropped (no area left)."""
    x1, y1, x2, y2 = box
    width, height = size
    if not all(v == v and abs(v) != float("inf") for v in box):
        conv.note(where, "refused", f"non-finite coordinates {box}")
        return None
    if x1 > x2 or y1 > y2:
        conv.note(where, "refused", f"xmin > xmax or ymin > ymax: {box}")
        return None
    clipped = (min(max(x1, 0), width), min(max(y1, 0), height),
               min(max(x2, 0), width), min(max(y2, 0), height))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        reason = "zero area" if x2 == x1 or y2 == y1 else "outside the image"
        conv.note(where, "dropped", f"{reason}: {box} in {width}x{height}")
        return None
    if clipped != tuple(box):
        conv.note(where, "clipped", f"{box} -> {clipped}: outside the {width}x{height} image")
    x1, y1, x2, y2 = clipped
    conv.per_class[conv.names[cls]] += 1
    conv.counts["boxes"] += 1
    return (f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")


def _text(node, tag: str, xml: Path) -> str:
    found = node.find(tag)
    if found is None or found.text is None:
        raise InputError(f"no <{tag}> in <{node.tag}>", xml)
    return found.text.strip()


def voc_objects(xml: Path) -> tuple[tuple[int, int] | None, list[tuple[str, tuple, bool]]]:
    """(width, height) from <size> (None when absent or zero) and (name, xyxy, difficult) of
    each <object>. VOC pixels are 1-based and inclusive: xmin=1..xmax=W covers [0, W]."""
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as err:
        raise InputError(f"not valid XML ({err})", xml) from None
    size = root.find("size")
    wh = None
    if size is not None:
        wh = (int(float(_text(size, "width", xml))), int(float(_text(size, "height", xml))))
        wh = wh if min(wh) > 0 else None
    objects = []
    for obj in root.findall("object"):
        bnd = obj.find("bndbox")
        if bnd is None:
            raise InputError("an <object> without <bndbox>", xml)
        x1, y1, x2, y2 = (float(_text(bnd, t, xml)) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = obj.find("difficult")
        objects.append((_text(obj, "name", xml), (x1 - 1, y1 - 1, x2, y2),
                        difficult is not None and (difficult.text or "0").strip() == "1"))
    return wh, objects


def voc_splits(root: Path) -> dict[str, list[str]]:
    """Image ids per split from ImageSets/Main/<split>.txt (not the per-class files), else every
    annotation as split 'all'."""
    main = root / "ImageSets" / "Main"
    splits = {}
    if main.is_dir():
        for path in sorted(main.glob("*.txt")):
            if "_" not in path.stem:
                splits[path.stem] = [line.split()[0] for line in path.read_text().splitlines()
                                     if line.strip()]
    if not splits:
        splits["all"] = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
    return splits


def class_order(found: set[str], names_file: str | None) -> list[str]:
    if names_file:
        return read_names(Path(names_file))
    if found <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    return sorted(found)


def convert_voc(root: Path, names_file: str | None, keep_difficult: bool) -> Conversion:
    if not (root / "Annotations").is_dir():
        raise InputError("no Annotations/ folder (expected a VOC root such as VOC2007)", root)
    splits = voc_splits(root)
    ids = sorted({i for members in splits.values() for i in members})
    parsed = {}
    for image_id in ids:
        xml = root / "Annotations" / f"{image_id}.xml"
        parsed[image_id] = voc_objects(xml) if xml.is_file() else None
    found = {name for p in parsed.values() if p for name, _, _ in p[1]}
    conv = Conversion(class_order(found, names_file))
    index = {name: i for i, name in enumerate(conv.names)}
    converted = {}  # image id -> rel path of the images kept
    for image_id, item in parsed.items():
        xml = root / "Annotations" / f"{image_id}.xml"
        image = next((p for p in sorted((root / "JPEGImages").glob(f"{image_id}.*"))), None)
        if item is None or image is None:
            conv.note(str(xml if item is None else root / "JPEGImages" / image_id),
                      "image left out", "no annotation file" if item is None else
                      "image file missing")
            continue
        size, objects = item
        size = size or _image_size(image, conv)
        if size is None:
            continue
        rel = f"images/{image.name}"
        rows = []
        for number, (name, box, difficult) in enumerate(objects, start=1):
            where = f"{xml}: object {number} ({name})"
            if name not in index:
                conv.note(where, "refused", "unknown class (not in the names file)")
            elif difficult and not keep_difficult:
                conv.note(where, "left out", "difficult (--keep-difficult keeps it)")
            else:
                row = yolo_row(index[name], box, size, where, conv)
                rows += [row] if row else []
        conv.labels[rel], conv.sources[rel], converted[image_id] = rows, image, rel
    for split, members in splits.items():
        conv.splits[split] = [converted[i] for i in members if i in converted]
    return conv


def _image_size(image: Path, conv: Conversion) -> tuple[int, int] | None:
    import cv2
    img = cv2.imread(str(image))
    if img is None:
        conv.note(str(image), "image left out", "no <size> and OpenCV cannot read the image")
        return None
    return img.shape[1], img.shape[0]


def coco_class_order(categories: list[dict], path: Path) -> tuple[list[str], list[int]]:
    """(names, source ids) by category id: a stable order whatever the file's order."""
    cats = sorted(categories, key=lambda c: c["id"])
    names = [str(c["name"]).strip() for c in cats]
    repeated = [n for n, k in Counter(names).items() if k > 1]
    if repeated:
        raise InputError(f"category names repeated: {', '.join(repeated)}", path)
    return names, [int(c["id"]) for c in cats]


def convert_coco(instances: Path, images: Path, split: str, keep_crowd: bool
                 ) -> tuple[Conversion, dict]:
    """The conversion and the id map (source category ids in class order, and each kept image's
    source id by its path in the project)."""
    try:
        data = json.loads(instances.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"not a COCO instances file ({err})", instances) from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(f"no {key!r} list: not a COCO instances file", instances)
    names, cat_ids = coco_class_order(data["categories"], instances)
    conv = Conversion(names)
    index = {cid: i for i, cid in enumerate(cat_ids)}
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    known = {img["id"] for img in data["images"]}
    for image_id in sorted(set(by_image) - known, key=str):
        conv.note(f"{instances}: annotations of image_id {image_id}", "refused",
                  f"{len(by_image[image_id])} boxes of an image not in 'images'")
    ids = {}
    for img in sorted(data["images"], key=lambda i: i["id"]):
        source = images / img["file_name"]
        if not source.is_file():
            conv.note(str(source), "image left out", "image file missing")
            continue
        rel = f"images/{split}/{Path(img['file_name']).name}"
        rows = []
        for ann in by_image.get(img["id"], []):
            where = f"{instances}: annotation {ann.get('id')} (image {img['file_name']})"
            if ann.get("category_id") not in index:
                conv.note(where, "refused", f"unknown category_id {ann.get('category_id')}")
                continue
            if ann.get("iscrowd") and not keep_crowd:
                conv.note(where, "left out", "iscrowd (--keep-crowd keeps it)")
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            row = yolo_row(index[ann["category_id"]], (x, y, x + w, y + h),
                           (int(img["width"]), int(img["height"])), where, conv)
            rows += [row] if row else []
        conv.labels[rel], conv.sources[rel], ids[rel] = rows, source, img["id"]
    conv.splits[split] = list(conv.labels)
    return conv, {"categories": [{"id": c, "name": n} for c, n in zip(cat_ids, names)],
                  "images": ids}


def sha256_of(paths: list[Path]) -> str:
    """One digest over files in order (name and bytes): the sources a project came from."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _place(source: Path, target: Path, copy: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if copy:
        shutil.copyfile(source, target)
    else:
        target.symlink_to(source.resolve())


def write_project(conv: Conversion, out: Path, copy: bool) -> Path:
    """Images, labels, lists, names and the .data file; returns the .data file."""
    for rel, rows in conv.labels.items():
        _place(conv.sources[rel], out / rel, copy)
        label = out / ("labels" + rel[len("images"):])
        label = label.with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(row + "\n" for row in rows))
    (out / "lists").mkdir(exist_ok=True)
    for split, members in conv.splits.items():
        (out / "lists" / f"{split}.txt").write_text("".join(f"../{m}\n" for m in members))
    names = out / f"{out.name}.names"
    names.write_text("".join(n + "\n" for n in conv.names))
    splits = sorted(p.stem for p in (out / "lists").glob("*.txt"))
    train = _pick(splits, ("train", "trainval", "train2017", "all"), "train") or splits[0]
    valid = _pick(splits, ("val", "test", "val2017"), "val") or train
    data = out / f"{out.name}.data"
    data.write_text(f"classes={len(conv.names)}\ntrain=lists/{train}.txt\n"
                    f"valid=lists/{valid}.txt\nnames={names.name}\n")
    if valid == train:
        print(f"note: no validation split, so {data.name} validates on {train} (its training "
              "images): give valid= another list for an honest score")
    return data


def _pick(splits: list[str], preferred: tuple[str, ...], prefix: str) -> str | None:
    for name in preferred:
        if name in splits:
            return name
    return next((s for s in splits if s.startswith(prefix)), None)


def write_report(conv: Conversion, out: Path, sources: dict[str, str], options: dict) -> dict:
    report = {"sources_sha256": sources, "options": options,
              "images": len(conv.labels), "boxes": conv.counts["boxes"],
              "classes": len(conv.names),
              "boxes_per_class": {n: conv.per_class[n] for n in conv.names},
              "splits": {k: len(v) for k, v in conv.splits.items()},
              "counts": {k: v for k, v in sorted(conv.counts.items()) if k != "boxes"},
              "events": conv.events}
    (out / report_file(options)).write_text(json.dumps(report, indent=1) + "\n")
    return report


def summary(report: dict, out: Path) -> str:
    """What the conversion did, for the terminal: counts, the first events, the report file."""
    lines = [f"{report['images']} images, {report['boxes']} boxes, {report['classes']} classes "
             f"({', '.join(f'{n} {k}' for n, k in report['boxes_per_class'].items())}); "
             f"splits: {', '.join(f'{k} {v}' for k, v in report['splits'].items())}"]
    counts = report["counts"]
    lines.append("changed or left out: " + (", ".join(f"{k} {v}" for k, v in counts.items())
                                            or "nothing"))
    lines += report["events"][:PRINTED_EVENTS]
    if len(report["events"]) > PRINTED_EVENTS:
        lines.append(f"... {len(report['events']) - PRINTED_EVENTS} more")
    lines.append(f"every event and the source digests: {out / report_file(report['options'])}")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="VOC or COCO annotations -> YOLO labels.")
    sub = parser.add_subparsers(dest="format", required=True)
    voc = sub.add_parser("voc", help="a VOC root: Annotations/, JPEGImages/, ImageSets/Main/")
    voc.add_argument("root")
    voc.add_argument("--names", default=None, help="class names file: this order, others "
                                                   "refused (default: VOC's 20, else sorted)")
    voc.add_argument("--keep-difficult", action="store_true",
                     help="keep <difficult>1 boxes (default: left out, as VOC's scoring does)")
    coco = sub.add_parser("coco", help="a COCO instances json and its image folder")
    coco.add_argument("instances")
    coco.add_argument("images")
    coco.add_argument("--split", default=None,
                      help="split name (default: the json's name without 'instances_')")
    coco.add_argument("--keep-crowd", action="store_true",
                      help="keep iscrowd boxes as objects (default: left out)")
    for p in (voc, coco):
        p.add_argument("out", help="the project folder to write")
        p.add_argument("--copy", action="store_true", help="copy images instead of linking")
    return parser


def main(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if args.format == "voc":
        root = Path(args.root)
        conv = convert_voc(root, args.names, args.keep_difficult)
        xmls = sorted((root / "Annotations").glob("*.xml"))
        sources = {"annotations": sha256_of(xmls), "images": sha256_of(list(conv.sources.values()))}
        options = {"format": "voc", "root": str(root), "keep_difficult": args.keep_difficult}
    else:
        instances, images = Path(args.instances), Path(args.images)
        split = args.split or instances.stem.removeprefix("instances_")
        conv, ids = convert_coco(instances, images, split, args.keep_crowd)
        merge_coco_ids(out, ids, instances)
        sources = {"instances": sha256_of([instances]),
                   "images": sha256_of(list(conv.sources.values()))}
        options = {"format": "coco", "instances": str(instances), "images": str(images),
                   "split": split, "keep_crowd": args.keep_crowd}
    out.mkdir(parents=True, exist_ok=True)
    data = write_project(conv, out, args.copy)
    print(summary(write_report(conv, out, sources, options), out))
    print(f"train with: python train.py --data {data}")
    return data


def merge_coco_ids(out: Path, ids: dict, instances: Path) -> None:
    """Add this split's image ids to OUT/coco_ids.json; a second split must have the same
    categories (the class order and names file are shared)."""
    path = out / COCO_IDS_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if old["categories"] != ids["categories"]:
            raise InputError(f"its categories differ from those {path} holds from an earlier "
                             "split: convert into another folder", instances)
        ids = {"categories": ids["categories"], "images": {**old["images"], **ids["images"]}}
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(ids, indent=1) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except InputError as err:
        sys.exit(report_input_error(err))
