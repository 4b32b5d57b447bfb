"""Score another trainer's detections by this project's evaluator (COCO's rules, equal to
pycocotools), on a .data file's validation images: the same 12 COCO numbers and per-class
table test.py prints, so two trainers are compared by one ruler.

    python -m tools.score_detections --data mydata/mydata.data --detections predictions.json
    python -m tools.score_detections --data mydata/mydata.data \
        --detections runs/detect/val/predictions.json --category-offset 1 --pycocotools

The detections are a COCO results file: a list of {"image_id", "category_id", "bbox":
[x, y, width, height] in the original image's pixels, "score"}. An image id is either one of
the ids ``test.py --save-json`` gives the validation images (their ground truth file's) or an
image's file stem, which the ultralytics package writes ("raccoon-12"). A category id is the
ground truth's, unless ``--category-offset K`` says category_id - K is the class index: the
ultralytics package writes class + 1 for a set that is not COCO (``--category-offset 1``).
Score every box the other trainer kept (its own evaluation's low threshold, e.g. 0.001), as
test.py does, or the numbers are not comparable.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from utils.base.errors import InputError, run_script
from utils.core.metrics import ImageDetections, coco_evaluate
from utils.data.coco_json import (
    bboxes_to_xyxy,
    ground_truth_json,
    pycocotools_stats,
    pycocotools_table,
)
from utils.data.data_config import prepare_data
from utils.engine.evaluation import EvalResult, eval_result, format_table, make_val_dataset

RECORD_KEYS = ("image_id", "category_id", "bbox", "score")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score a COCO results file from any trainer on a .data file's validation "
                    "images by this project's evaluator.")
    parser.add_argument("--data", required=True, help=".data file whose validation split was "
                        "detected")
    parser.add_argument("--detections", required=True, help="COCO results json (a list of "
                        "image_id, category_id, bbox [x, y, w, h] pixels, score)")
    parser.add_argument("--category-offset", type=int, default=None,
                        help="category_id - K is the class index (1 for the ultralytics "
                             "package on a set that is not COCO); default: the ground truth's "
                             "category ids")
    parser.add_argument("--pycocotools", action="store_true",
                        help="also run pycocotools' COCOeval on the same boxes and print its 12 "
                             "numbers beside ours")
    return parser


def read_records(path: Path) -> list[dict]:
    """The detections file's records, each checked for the four COCO result keys."""
    try:
        records = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read: {err}", path) from None
    except json.JSONDecodeError as err:
        raise InputError(f"not JSON ({err.msg}), expected a COCO results list", path,
                         err.lineno) from None
    if not isinstance(records, list):
        raise InputError(f"a JSON {type(records).__name__}, expected a list of detections "
                         "(a COCO results file)", path)
    for i, r in enumerate(records):
        missing = [k for k in RECORD_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            raise InputError(f"record {i} lacks {', '.join(missing)}; each detection needs "
                             f"{', '.join(RECORD_KEYS)}", path)
        if not (isinstance(r["bbox"], list) and len(r["bbox"]) == 4):
            raise InputError(f"record {i}: bbox {r['bbox']!r}, expected [x, y, width, height]",
                             path)
    return records


def image_index(truth: dict) -> dict:
    """Each accepted image id (the ground truth's ids and the file stems) -> the ground truth's
    id. A stem two validation images share is left out (it names neither)."""
    ids = {im["id"]: im["id"] for im in truth["images"]}
    stems: dict[str, list[int]] = {}
    for im in truth["images"]:
        stems.setdefault(Path(im["file_name"]).stem, []).append(im["id"])
    ids.update({stem: found[0] for stem, found in stems.items() if len(found) == 1})
    return ids


def classes_of(records: list[dict], categories: list[int], offset: int | None,
               path: Path) -> np.ndarray:
    """The class index of each record [N], by the ground truth's category ids or the offset."""
    position = {c: i for i, c in enumerate(categories)}
    out = np.empty(len(records), dtype=np.int64)
    for i, r in enumerate(records):
        cat = r["category_id"]
        if offset is not None:
            cls = cat - offset if isinstance(cat, int) else -1
            if not 0 <= cls < len(categories):
                raise InputError(f"record {i}: category_id {cat!r} - {offset} is not a class "
                                 f"index 0..{len(categories) - 1}", path)
        elif cat in position:
            cls = position[cat]
        else:
            hint = (" (the ultralytics package writes class + 1: --category-offset 1)"
                    if isinstance(cat, int) and cat - 1 in range(len(categories)) else "")
            raise InputError(f"record {i}: category_id {cat!r} is none of the ground truth's "
                             f"{categories}{hint}", path)
        out[i] = cls
    return out


def score(truth: dict, records: list[dict], classes: np.ndarray, path: Path
          ) -> tuple[list[ImageDetections], list[dict]]:
    """Per-image ground truth and detections for the evaluator (boxes xyxy), and the records
    with the ground truth's image and category ids for pycocotools."""
    index = image_index(truth)
    categories = [c["id"] for c in truth["categories"]]
    per_image: dict[int, list[int]] = {im["id"]: [] for im in truth["images"]}
    mapped = []
    for i, r in enumerate(records):
        key = r["image_id"]
        if key not in index:
            example = truth["images"][0]
            raise InputError(f"record {i}: image_id {key!r} is neither an image id of the "
                             f"validation images ({example['id']}, ...) nor one's file stem "
                             f"({Path(example['file_name']).stem!r}, ...)", path)
        per_image[index[key]].append(i)
        mapped.append({**r, "image_id": index[key], "category_id": categories[classes[i]]})
    gts: dict[int, list[dict]] = {im["id"]: [] for im in truth["images"]}
    for a in truth["annotations"]:
        gts[a["image_id"]].append(a)
    images = []
    for image_id in sorted(per_image):
        rows = per_image[image_id]
        truths = gts[image_id]
        images.append(ImageDetections(
            image_id,
            bboxes_to_xyxy([a["bbox"] for a in truths]),
            np.array([categories.index(a["category_id"]) for a in truths], dtype=np.int64),
            bboxes_to_xyxy([records[i]["bbox"] for i in rows]),
            np.array([records[i]["score"] for i in rows], dtype=np.float64),
            classes[rows]))
    return images, mapped


class Scored(NamedTuple):
    """A detections file scored: our evaluator's result, the ground truth (COCO json) and the
    records with the ground truth's image and category ids (what pycocotools loads)."""
    result: EvalResult
    truth: dict
    mapped: list[dict]  # one per record of the file


def score_file(data_file: str, detections: str, category_offset: int | None = None) -> Scored:
    """Score the COCO results file ``detections`` on ``data_file``'s validation images."""
    data = prepare_data(data_file)
    dataset = make_val_dataset(data, img_size=32, batch_size=1)  # sizes and labels only
    truth = ground_truth_json(dataset.files, dataset.image_sizes, dataset.labels, data.names)
    path = Path(detections)
    records = read_records(path)
    categories = [c["id"] for c in truth["categories"]]
    classes = classes_of(records, categories, category_offset, path)
    images, mapped = score(truth, records, classes, path)
    return Scored(eval_result(coco_evaluate(images), images, data.names, None), truth, mapped)


def pycocotools_of(scored: Scored) -> list[float]:
    """pycocotools' 12 numbers on the same boxes (it needs at least one)."""
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, det_file = Path(tmp, "truth.json"), Path(tmp, "detections.json")
        gt_file.write_text(json.dumps(scored.truth))
        det_file.write_text(json.dumps(scored.mapped))
        return pycocotools_stats(gt_file, det_file)


def main(args: argparse.Namespace) -> EvalResult:
    scored = score_file(args.data, args.detections, args.category_offset)
    print(f"{len(scored.mapped)} detections on {len(scored.truth['images'])} validation images of "
          f"{args.data}")
    print(format_table(scored.result, kept=False))
    if args.pycocotools and not scored.mapped:
        print("no detections: pycocotools cannot load an empty result list")
    elif args.pycocotools:
        print(pycocotools_table(scored.result.coco, pycocotools_of(scored)))
    return scored.result

if __name__ == "__main__":
    run_script(main, get_args_parser())
