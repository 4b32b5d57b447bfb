"""tools.score_detections: another trainer's COCO results file scored by our evaluator."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tools import score_detections
from utils.data.coco_json import bboxes_to_xyxy, ground_truth_json
from utils.data.data_config import prepare_data
from utils.engine.evaluation import make_val_dataset

ROOT = Path(__file__).resolve().parents[2]


def _truth(data_file: Path) -> dict:
    data = prepare_data(data_file)
    ds = make_val_dataset(data, img_size=32, batch_size=1)
    return ground_truth_json(ds.files, ds.image_sizes, ds.labels, data.names)


def _records(truth: dict, by_stem: bool, offset: int, shift: float = 0.0) -> list[dict]:
    """One detection per ground-truth box, as the ultralytics package writes them (by stem,
    class + 1) or as test.py does (by id, the ground truth's category)."""
    stems = {im["id"]: Path(im["file_name"]).stem for im in truth["images"]}
    cats = [c["id"] for c in truth["categories"]]
    out = []
    for k, a in enumerate(truth["annotations"]):
        x, y, w, h = a["bbox"]
        cls = cats.index(a["category_id"])
        out.append({"image_id": stems[a["image_id"]] if by_stem else a["image_id"],
                    "category_id": cls + offset if by_stem else a["category_id"],
                    "bbox": [x + shift * w, y, w, h], "score": 0.9 - 0.001 * k})
    return out


def _score(tiny_data, tmp_path, records, *extra) -> score_detections.EvalResult:
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(records))
    args = score_detections.get_args_parser().parse_args(
        ["--data", str(tiny_data), "--detections", str(path), *extra])
    return score_detections.main(args)


def test_perfect_detections_score_one_and_pycocotools_agrees(tiny_data, tmp_path, capsys):
    truth = _truth(tiny_data)
    result = _score(tiny_data, tmp_path, _records(truth, by_stem=True, offset=1),
                    "--category-offset", "1", "--pycocotools")
    out = capsys.readouterr().out
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(1.0)
    assert "largest |difference|: 0" in out
    assert "keeps it for detect.py" not in out  # not this project's checkpoint


def test_stems_with_offset_equal_ids_with_ground_truth_categories(tiny_data, tmp_path):
    """The same boxes, named the ultralytics way or test.py's way, score the same; boxes moved
    by 30% of their width score below 1 (the evaluator is not blind to them)."""
    truth = _truth(tiny_data)
    a = _score(tiny_data, tmp_path, _records(truth, True, 1, shift=0.3), "--category-offset", "1")
    b = _score(tiny_data, tmp_path, _records(truth, False, 0, shift=0.3))
    assert a.coco == b.coco
    assert 0 < a.map50_95 < 0.9


def test_unknown_image_names_the_record(tiny_data, tmp_path):
    truth = _truth(tiny_data)
    records = _records(truth, True, 1)
    records[2]["image_id"] = "not-an-image"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records))
    run = subprocess.run([sys.executable, "-m", "tools.score_detections", "--data",
                          str(tiny_data), "--detections", str(path), "--category-offset", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert f"{path}: record 2: image_id 'not-an-image'" in run.stderr


def test_one_based_categories_without_offset_get_a_hint():
    """A converted COCO set keeps its source's ids (here 0, 1, 2); the ultralytics package
    writes class + 1, so its last class (3) is no id of the ground truth."""
    records = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}]
    with pytest.raises(score_detections.InputError, match="--category-offset 1"):
        score_detections.classes_of(records, [0, 1, 2], None, Path("p.json"))
    assert score_detections.classes_of(records, [0, 1, 2], 1, Path("p.json")).tolist() == [2]


@pytest.mark.parametrize("text, expected", [
    ("[{\"image_id\": 1,\n", "p.json:2: not JSON"),
    ("{\"image_id\": 1}", "a JSON dict, expected a list"),
    ("[{\"image_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", "record 0 lacks category_id"),
    ("[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0], \"score\": 0.5}]",
     "record 0: bbox [0, 0], expected"),
])
def test_bad_detection_files_say_what_was_expected(tmp_path, text, expected):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(score_detections.InputError) as err:
        score_detections.read_records(path)
    assert expected in str(err.value).replace(str(tmp_path) + "/", "")


def test_box_conversion_is_xywh_to_xyxy():
    np.testing.assert_array_equal(bboxes_to_xyxy([[1, 2, 3, 4]]), [[1, 2, 4, 6]])
