"""The evaluation plots: each written for a 1-class and a 3-class evaluation, the confusion
matrix's numbers in its .csv, labels.jpg, where test.py writes them, the footer's record, the
"no evaluated epoch" message, and no draw from any global random generator."""
import csv
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.utils.core.test_curves import synthetic_images
from utils.core.curves import confidence_curves, ranked_detections
from utils.core.metrics import ImageDetections, coco_evaluate
from utils.engine.eval_plots import (
    CONFUSION_FILES,
    CURVE_FILES,
    footer_text,
    plot_labels,
    plots_after_training,
    plots_folder,
    result_confusion,
    run_record,
    write_eval_plots,
)
from utils.engine.evaluation import eval_result

NAMES = {1: ["object"], 3: ["person", "bicycle", "car, red"]}


def _evaluation(num_classes: int, records=None):
    records = synthetic_images(num_classes) if records is None else records
    return eval_result(coco_evaluate(records), records, NAMES[num_classes], None)


def _image_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        return image.size


@pytest.mark.parametrize("num_classes", [1, 3])
def test_every_plot_is_written_and_the_csv_holds_the_matrix(num_classes, tmp_path):
    result = _evaluation(num_classes)
    written = write_eval_plots(result, tmp_path / "out", footer_text("abc", 0),
                               bootstrap=(20, 0))
    assert [p.name for p in written] == [*CURVE_FILES, *CONFUSION_FILES]
    for path in written[:-1]:
        width, height = _image_size(path)
        assert width > 500 and height > 300, path.name
    rows = list(csv.reader(written[-1].open()))
    assert rows[0] == ["true \\ predicted", *NAMES[num_classes], "background"]
    assert [r[0] for r in rows[1:]] == [*NAMES[num_classes], "background"]
    matrix = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_array_equal(matrix, result_confusion(result))
    assert matrix[:-1].sum() == result.labels  # each ground truth counted once


def test_the_f1_mark_is_the_evaluations_p_r_and_f1():
    result = _evaluation(3)
    conf, p, r, f1 = confidence_curves(ranked_detections(result.matches)).at_best()
    assert (p, r, f1) == (result.precision, result.recall, result.f1)
    assert 0 <= conf <= 1 and result.f1_conf == conf


def test_a_best_f1_below_the_evaluations_threshold_is_that_threshold():
    """With every box found the F1 curve is flat from 0 up to the lowest score, and its first
    maximum is the grid's 0.0; no box under the evaluation's own threshold was scored, so the
    best-F1 threshold reads as that one, never "every box" (what detect.py would draw)."""
    box = np.array([[10.0, 10.0, 50.0, 50.0]])
    records = [ImageDetections(0, box, np.array([0]), box, np.array([0.6]), np.array([0]))]
    metrics = coco_evaluate(records)
    assert metrics.f1_conf == 0.0
    result = eval_result(metrics, records, ["object"], None, conf_thres=0.001)
    assert result.f1 == pytest.approx(1.0) and result.f1_conf == 0.001


@pytest.mark.parametrize("num_classes", [1, 3])
def test_labels_jpg_is_written(num_classes, tmp_path):
    rng = np.random.default_rng(0)
    labels = [np.column_stack((rng.integers(0, num_classes, n), rng.uniform(0.1, 0.9, (n, 4))))
              for n in (3, 0, 5)]
    path = plot_labels(labels, NAMES[num_classes], tmp_path / "labels.jpg", "seed 0")
    assert path.name == "labels.jpg" and min(_image_size(path)) > 500
    plot_labels([np.zeros((0, 5))], NAMES[num_classes], tmp_path / "empty.jpg", "")


def test_an_evaluation_without_ground_truth_draws_notes_not_curves(tmp_path):
    records = [ImageDetections(0, np.zeros((0, 4)), np.zeros(0, int),
                               np.array([[0.0, 0, 10, 10]]), np.array([0.9]), np.array([2]))]
    result = _evaluation(3, records)
    written = write_eval_plots(result, tmp_path, "", bootstrap=(5, 0))
    assert len(written) == 7
    assert result_confusion(result)[3, 2] == 1  # the one detection: true background


def test_no_evaluated_epoch_is_said_not_plotted(tmp_path):
    training = SimpleNamespace(run_dir=tmp_path)  # its folder is all that is read
    message = plots_after_training(training, None, 4)
    assert message.startswith("no evaluation plots: epoch 4, the last trained, was not "
                              "evaluated (--notest")
    assert f"python test.py --weights {tmp_path / 'weights' / 'last.pt'}" in message
    assert not list(tmp_path.iterdir())


def test_plotting_draws_from_no_global_generator(tmp_path):
    result = _evaluation(3)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    write_eval_plots(result, tmp_path, "", bootstrap=(5, 1))
    plot_labels([np.array([[0, 0.5, 0.5, 0.2, 0.2]])], NAMES[1], tmp_path / "l.jpg", "")
    assert random.getstate() == states[0]
    np.testing.assert_array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_where_test_py_writes_its_plots(tmp_path):
    run = tmp_path / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "opt.yaml").write_text("seed: 0\n")
    best, loose = run / "weights" / "best.pt", tmp_path / "weights" / "m.pt"
    assert plots_folder(best, None, None) == run
    assert plots_folder(best, False, None) is None
    assert plots_folder(best, None, tmp_path / "d") == tmp_path / "d"
    assert plots_folder(loose, None, None) is None  # a weights/ folder that no run wrote
    assert plots_folder(loose, True, None) == tmp_path / "weights"


def test_the_footer_holds_the_fingerprint_seed_and_commit(tmp_path):
    (tmp_path / "repro.yaml").write_text(yaml.safe_dump(
        {"options": {"seed": 7}, "environment": {"git_commit": "0123456789abcdef"},
         "resumes": [{"epoch": 2, "environment": {"git_commit": "fedcba9876543210 (with "
                                                                 "uncommitted changes)"}}]}))
    record = run_record(tmp_path)
    assert record == {"seed": 7, "commit": "fedcba9876543210 (with uncommitted changes)"}
    assert footer_text("aa11", record["seed"], record["commit"], "best.pt") == \
        "weights aa11 | seed 7 | commit fedcba9876 + uncommitted changes | best.pt"
    assert footer_text(None, None, None) == "" and run_record(tmp_path / "none") == {}
