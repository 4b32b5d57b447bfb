"""Convert Pascal VOC, labelImg or COCO annotations into a YOLO-label project this trainer reads.

    python -m tools.convert_labels voc VOCdevkit/VOC2007 data/voc
    python -m tools.convert_labels voc my_set data/mine --val-fraction 0.2   # labelImg folders
    python -m tools.convert_labels coco annotations/instances_val2017.json val2017 data/coco
    python train.py --data data/voc/voc.data --cfg cfg/yolov3-tiny.cfg

Writes OUT/images/ (links to the sources; --copy copies; a COCO split in images/<split>/ with
the file_name's sub-folders), OUT/labels/ (YOLO rows, the same paths), OUT/<split>.txt (one list
file per split, lines './images/...' relative to OUT, as this trainer and ultralytics' both read
them: VOC's ImageSets/Main/*.txt when present, else train and val by --val-fraction, else
"all"; COCO: the --split name), OUT/<OUT name>.names (VOC: the 20 VOC classes in VOC's order
when the names are VOC's, else sorted; COCO: by category id), OUT/<OUT name>.data (train= the
train split, valid= the val or test split), and OUT/conversion_report.json (a COCO split's:
OUT/conversion_report_<split>.json): counts, every box clipped, dropped or refused with its file
and reason, and the SHA-256 of the sources. COCO conversions also write OUT/coco_ids.json (source
image and category ids), so test.py --save-json writes detections with the source file's own ids
and pycocotools scores them against the original instances file.

A project is written whole or not at all: into a staging folder beside OUT (OUT.partial-<pid>;
for a second COCO split, a hard-linked copy of the existing project), then swapped with OUT in
one step (Linux renameat2 RENAME_EXCHANGE; elsewhere two renames, OUT.replaced-<pid> between
them).
A kill at any moment leaves the old project or the new one; the next run removes what a killed
one left beside OUT (or puts the old project back) and says so.

Converting, not reading VOC / COCO at training time: the trainer keeps one label reader (with its
checks, caching and input digests), the conversion's decisions are made once and recorded, and the
result is a folder a user can inspect and edit.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import re
import shlex
import shutil
from pathlib import Path

from utils.base.errors import InputError, run_script
from utils.data.coco_reader import convert_coco
from utils.data.conversion_report import report_file, report_of, sha256_of, summary
from utils.data.label_conversion import Conversion, split_problem
from utils.data.voc_reader import convert_voc, find_voc_source

COCO_IDS_FILE = "coco_ids.json"
LEFTOVER = re.compile(r"\.(partial|replaced)-(\d+)")  # OUT.partial-<pid>, OUT.replaced-<pid>


# --- the folder OUT: what may be replaced, what a killed run left -----------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(out: Path) -> list[str]:
    """Remove what a killed conversion left beside OUT (a staging folder, or the old project
    of the fallback swap, OUT.replaced-<pid>, which is put back when OUT is missing);
    returns the notes to print. A folder of a live process is another conversion at work."""
    found, notes = [], []
    for path in out.parent.iterdir() if out.parent.is_dir() else []:
        match = path.name.startswith(out.name) and LEFTOVER.fullmatch(path.name[len(out.name):])
        if not match or not path.is_dir() or path.is_symlink():
            continue
        kind, pid = match[1], int(match[2])
        if kind == "replaced" and not _reports(path):  # not ours (a user's backup?): kept
            notes.append(f"note: left {path} alone: it holds no conversion report")
            continue
        if pid != os.getpid() and _alive(pid):
            raise InputError(f"another conversion (process {pid}) is writing this project "
                             f"(its folder {path} exists): wait for it, or delete {path} if no "
                             "such process runs", out)
        found.append((kind, path))
    for kind, path in sorted(found, key=lambda f: f[0] != "replaced"):  # the old project first
        if kind == "replaced" and not out.exists():
            os.rename(path, out)
            notes.append(f"note: put back {out} from {path}, left by a conversion that did not "
                         "finish")
        else:
            shutil.rmtree(path)
            notes.append(f"note: removed {path}, left by a conversion that did not finish")
    return notes


def _reports(out: Path) -> list[dict]:
    reports = []
    for path in sorted(out.glob("conversion_report*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            reports.append({})
    return reports


def check_out(out: Path, fmt: str, categories: list | None) -> bool:
    """Whether OUT holds a project to build on, after checking that replacing it loses
    nothing: OUT is absent, empty, or a project this converter wrote holding nothing else (VOC,
    replaced whole); a COCO split goes into a COCO project with the same categories."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise InputError("exists and is not a folder", out)
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    reports = _reports(out)
    if not reports:
        raise InputError("exists and is not a project this converter wrote (no "
                         "conversion_report*.json in it): convert into a new or empty folder", out)
    ids = out / COCO_IDS_FILE
    if fmt == "coco":
        if not ids.is_file():
            raise InputError("holds a conversion that is not COCO's (no coco_ids.json): convert "
                             "COCO into another folder", out)
        try:
            theirs = json.loads(ids.read_text())["categories"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"cannot read the categories of an earlier split ({err!r})",
                             ids) from None
        if theirs != categories:
            raise InputError(f"its categories differ from those {ids} holds from an earlier "
                             "split: convert into another folder", out)
        return True
    owned = {"images", "labels", "lists", COCO_IDS_FILE, f"{out.name}.names",
             f"{out.name}.data"} | {f"{s}.txt" for r in reports for s in r.get("splits", {})}
    foreign = [e for e in entries if e not in owned and not e.startswith("conversion_report")]
    if foreign:
        raise InputError(f"holds files the converter did not write, which replacing the project "
                         f"would lose: {', '.join(foreign)}; move them out or convert into "
                         "another folder", out)
    return True


# --- staging and the swap ---------------------------------------------------------------------

def _exchange(a: Path, b: Path) -> None:
    """Swap two paths in one step (Linux renameat2 with RENAME_EXCHANGE); OSError where the
    system or the file system has no such call."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        raise OSError(errno.ENOSYS, "renameat2 is not available") from None
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def swap_in(staging: Path, out: Path) -> None:
    """Put the finished staging folder at OUT; the old project is deleted after. With the
    exchange there is no moment without a whole project at OUT; without it, OUT is briefly
    absent with the old project whole at OUT.replaced-<pid> (put back by the next run)."""
    if not out.exists():
        os.rename(staging, out)
        return
    try:
        _exchange(staging, out)
    except OSError:
        old = out.with_name(f"{out.name}.replaced-{os.getpid()}")
        os.rename(out, old)
        try:
            os.rename(staging, out)
        except BaseException:
            os.rename(old, out)
            raise
        shutil.rmtree(old)
        return
    shutil.rmtree(staging)  # the old project, now under the staging name


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the old project's bytes, not a second copy of a big set
    except OSError:
        shutil.copy2(src, dst)


def start_staging(out: Path, base: bool, split: str | None) -> Path:
    """An empty staging folder beside OUT, or (base) a hard-linked copy of the project at OUT
    without what this COCO split will write anew."""
    staging = out.with_name(f"{out.name}.partial-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not base:
        staging.mkdir()
        return staging
    redone = {out / "images": {split}, out / "labels": {split}, out / "lists": {f"{split}.txt"},
              out: {f"{split}.txt", f"conversion_report_{split}.json"}}
    shutil.copytree(out, staging, symlinks=True, copy_function=_link_or_copy,
                    ignore=lambda folder, names: redone.get(Path(folder), set()) & set(names))
    return staging


def _write_file(path: Path, text: str) -> None:
    """A new file: one hard-linked from the old project is replaced, never written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text)


def _place(source: Path, target: Path, copy: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if copy:
        shutil.copyfile(source, target)
    else:
        target.symlink_to(source.resolve())


# --- the project ------------------------------------------------------------------------------

def _migrate_lists(stage: Path) -> set[str]:
    """Lists of an older project (lists/<split>.txt, lines '../images/...') become
    <split>.txt at the root with './images/...' lines; returns their splits."""
    folder, moved = stage / "lists", set()
    for path in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        _write_file(stage / path.name, "".join(("./" + line[3:] if line.startswith("../")
                                                else line) + "\n" for line in lines))
        moved.add(path.stem)
    if folder.is_dir():
        shutil.rmtree(folder)
    return moved


def _pick(splits: list[str], preferred: tuple[str, ...], prefix: str) -> str | None:
    for name in preferred:
        if name in splits:
            return name
    return next((s for s in splits if s.startswith(prefix)), None)


def write_project(conv: Conversion, stage: Path, name: str, copy: bool) -> tuple[str, str]:
    """Images, labels, list files, names and the .data file (``name`` is OUT's: the staging
    folder is renamed); returns the (train, valid) splits the .data file names."""
    for rel, rows in conv.labels.items():
        _place(conv.sources[rel], stage / rel, copy)
        _write_file((stage / ("labels" + rel[len("images"):])).with_suffix(".txt"),
                    "".join(row + "\n" for row in rows))
    for split, members in conv.splits.items():
        _write_file(stage / f"{split}.txt", "".join(f"./{m}\n" for m in members))
    known = set(conv.splits) | _migrate_lists(stage) | \
        {s for r in _reports(stage) for s in r.get("splits", {})}
    filled = sorted(s for s in known if (stage / f"{s}.txt").is_file()
                    and (stage / f"{s}.txt").read_text().strip())
    _write_file(stage / f"{name}.names", "".join(n + "\n" for n in conv.names))
    train = _pick(filled, ("train", "trainval", "train2017", "all"), "train") or filled[0]
    valid = _pick(filled, ("val", "test", "val2017"), "val") or train
    _write_file(stage / f"{name}.data", f"classes={len(conv.names)}\ntrain={train}.txt\n"
                f"valid={valid}.txt\nnames={name}.names\n")
    return train, valid


def merge_coco_ids(stage: Path, ids: dict, split: str) -> None:
    """This split's image ids into coco_ids.json, replacing those of an earlier conversion of
    the same split (the categories were checked against it before staging)."""
    path = stage / COCO_IDS_FILE
    if path.is_file():
        old = json.loads(path.read_text())["images"]
        ids = {"categories": ids["categories"],
               "images": {**{k: v for k, v in old.items() if not k.startswith(f"images/{split}/")},
                          **ids["images"]}}
    _write_file(path, json.dumps(ids, indent=1) + "\n")


# --- the command ------------------------------------------------------------------------------

def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="VOC, labelImg or COCO annotations -> YOLO "
                                                 "labels.")
    sub = parser.add_subparsers(dest="format", required=True)
    voc = sub.add_parser("voc", help="a VOC root (Annotations/, JPEGImages/, ImageSets/Main/) "
                         "or a labelImg set (annotations/ beside images/, or one folder of both)")
    voc.add_argument("root", nargs="?", default=None,
                     help="the set's folder (optional with --annotations and --images)")
    voc.add_argument("--annotations", default=None, help="the folder of the .xml files")
    voc.add_argument("--images", default=None, help="the folder of the images (an image is "
                     "named as its .xml, with an image suffix)")
    voc.add_argument("--names", default=None, help="class names file: this order, others "
                                                   "refused (default: VOC's 20, else sorted)")
    voc.add_argument("--keep-difficult", action="store_true",
                     help="keep <difficult>1 boxes (default: left out, as VOC's scoring does)")
    voc.add_argument("--drop-degenerate", action="store_true",
                     help="drop boxes with xmin = xmax or ymin = ymax (default: kept as the "
                          "1-pixel boxes VOC's inclusive reading makes them, and reported)")
    voc.add_argument("--val-fraction", type=float, default=None,
                     help="without image sets: put this fraction of the images (0 < F < 1) in a "
                          "val split, chosen from a hash of (seed, image id), so adding images "
                          "moves none (default: no split, validate on the training images)")
    voc.add_argument("--seed", type=int, default=0, help="the seed of --val-fraction")
    coco = sub.add_parser("coco", help="a COCO instances json and its image folder")
    coco.add_argument("instances")
    coco.add_argument("images")
    coco.add_argument("--split", default=None,
                      help="split name (default: the json's name without 'instances_')")
    coco.add_argument("--keep-crowd", action="store_true",
                      help="keep iscrowd boxes as objects (default: left out)")
    for p in (voc, coco):
        p.add_argument("out", help="the project folder to write (replaced whole: a new folder "
                                   "or one this converter wrote)")
        p.add_argument("--copy", action="store_true", help="copy images instead of linking")
    return parser


def read_voc(args: argparse.Namespace) -> tuple[Conversion, dict, dict]:
    if args.val_fraction is not None and not 0 < args.val_fraction < 1:
        raise InputError(f"--val-fraction must be between 0 and 1 (both excluded), got "
                         f"{args.val_fraction}")
    source = find_voc_source(*(Path(p) if p else None
                               for p in (args.root, args.annotations, args.images)))
    conv = convert_voc(source, args.names, args.keep_difficult, args.drop_degenerate,
                       args.val_fraction, args.seed)
    xmls = sorted(source.annotations.glob("*.xml"))
    sources = {"annotations": sha256_of(xmls), "images": sha256_of(list(conv.sources.values()))}
    options = {"format": "voc", "root": args.root, "annotations": str(source.annotations),
               "images": str(source.images), "layout": source.layout,
               "keep_difficult": args.keep_difficult, "drop_degenerate": args.drop_degenerate,
               "val_fraction": args.val_fraction,
               "seed": None if args.val_fraction is None else args.seed}
    return conv, sources, options


def read_coco(args: argparse.Namespace) -> tuple[Conversion, dict, dict, dict]:
    instances, images = Path(args.instances), Path(args.images)
    split = args.split if args.split is not None else instances.stem.removeprefix("instances_")
    if problem := split_problem(split):
        given = "" if args.split is not None else " (from the file name: give --split)"
        raise InputError(f"--split {split!r}{given}: {problem}")
    conv, ids = convert_coco(instances, images, split, args.keep_crowd)
    sources = {"instances": sha256_of([instances]),
               "images": sha256_of(list(conv.sources.values()))}
    options = {"format": "coco", "instances": str(instances), "images": str(images),
               "split": split, "keep_crowd": args.keep_crowd}
    return conv, ids, sources, options


def sources_of(options: dict) -> list[Path]:
    """The folders (or file) a conversion reads."""
    keys = ("annotations", "images") if options["format"] == "voc" else ("instances", "images")
    return [Path(options[k]) for k in keys]


def write_staged(conv: Conversion, ids: dict | None, report: dict, real: Path, base: bool,
                 copy: bool) -> tuple[str, str]:
    """The whole project written beside OUT, then swapped in (the report last, so a staging
    folder with a report is complete); returns the (train, valid) splits of the .data file."""
    options = report["options"]
    staging = start_staging(real, base, options.get("split"))
    try:
        train, valid = write_project(conv, staging, real.name, copy)
        if ids is not None:
            merge_coco_ids(staging, ids, options["split"])
        _write_file(staging / report_file(options), json.dumps(report, indent=1) + "\n")
        swap_in(staging, real)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the old project stays as it was
        raise
    return train, valid


def main(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    ids = None
    if args.format == "voc":
        conv, sources, options = read_voc(args)
    else:
        conv, ids, sources, options = read_coco(args)
    real = Path(os.path.realpath(out))  # a linked project is replaced where it is; "." has a name
    for folder in sources_of(options):
        if folder.resolve().is_relative_to(real):
            raise InputError(f"the sources ({folder}) are inside the project folder, which the "
                             "conversion replaces: convert into another folder", out)
    notes = clean_leftovers(real)
    base = check_out(real, args.format, ids and ids["categories"]) and args.format == "coco"
    report = report_of(conv, sources, options)
    train, valid = write_staged(conv, ids, report, real, base, args.copy)
    print("\n".join([*notes, summary(report, out)]))
    for split, members in conv.splits.items():
        if not members:
            print(f"warning: split {split} holds no image (see the events above)")
    data = out / f"{real.name}.data"
    if valid == train:
        other = "a COCO split of other images" if args.format == "coco" else "--val-fraction"
        print(f"note: no validation split, so {data.name} validates on {train} (its training "
              f"images): give valid= another list, or convert with {other}, for an honest score")
    print(f"train with: python train.py --data {shlex.quote(str(data))}")
    return data


if __name__ == "__main__":
    run_script(main, get_args_parser())
