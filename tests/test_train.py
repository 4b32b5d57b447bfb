"""End-to-end: train.py, test.py and detect.py on a tiny generated dataset and a micro model."""
from __future__ import annotations

import contextlib
import io
import shutil

import cv2
import numpy as np
import pytest
import torch
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

import detect
import test as test_script
import train
from tests.helpers import MICRO_CFG, comparable, run_train
from utils.base.errors import InputError
from utils.base.repro import configure_determinism
from utils.data.augment import AUGMENT_KEYS
from utils.data.hyp import load_hyp
from utils.engine.checkpoint import load_checkpoint, model_from_checkpoint
from utils.engine.options import REPRO_THREADS
from utils.engine.results import COLUMNS, read_results

pytestmark = pytest.mark.slow


def test_smoke_training_writes_its_files(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path)
    for name in ("results.txt", "results.png", "opt.yaml", "hyp.yaml", "repro.yaml",
                 "train_batch0.jpg", "val_predictions.jpg", "weights/last.pt", "weights/best.pt",
                 "results.csv", "labels.jpg", "PR_curve.png", "F1_curve.png",
                 "confusion_matrix.png", "confusion_matrix.csv"):
        assert (run / name).is_file(), name
    lines = (run / "results.txt").read_text().splitlines()
    assert lines[0].startswith("#") and lines[0][1:].split() == list(COLUMNS)
    rows = read_results(run)
    assert [r.epoch for r in rows] == [0, 1] and all(len(r.fingerprint) == 16 for r in rows)
    ckpt = load_checkpoint(run / "weights" / "last.pt")
    assert ckpt["epoch"] == 1 and set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    assert ckpt["ema"]["updates"] > 0
    # A second run never overwrites the first.
    assert run_train(tiny_data, tmp_path, "--epochs", "1").name == "exp2"


def test_repro_runs_are_identical_and_seed_matters(tiny_data, tmp_path):
    a = run_train(tiny_data, tmp_path, "--repro", "--name", "a")
    b = run_train(tiny_data, tmp_path, "--repro", "--name", "b")
    assert comparable(a) == comparable(b)
    c = run_train(tiny_data, tmp_path, "--repro", "--seed", "1", "--name", "c")
    assert [f for _, f in comparable(c)] != [f for _, f in comparable(a)]
    model = model_from_checkpoint(load_checkpoint(a / "weights" / "last.pt"), "a")
    assert not any(isinstance(m, nn.Upsample) for m in model.modules())
    hyp = load_hyp(a / "hyp.yaml")
    assert all(hyp[k] == 0 for k in AUGMENT_KEYS)


def test_resume_equals_straight_run(tiny_data, tmp_path):
    straight = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--name", "straight")
    part = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--stop-after", "1",
                     "--name", "part")
    assert len(read_results(part)) == 1
    args = train.get_args_parser().parse_args(["--resume", str(part), "--quiet"])
    assert train.main(args) == part
    assert comparable(part) == comparable(straight)


def test_compiled_repro_runs_repeat_and_resume_exactly(tiny_data, tmp_path):
    a = run_train(tiny_data, tmp_path, "--repro", "--compile", "--epochs", "3", "--name", "a")
    b = run_train(tiny_data, tmp_path, "--repro", "--compile", "--epochs", "3", "--name", "b")
    assert comparable(a) == comparable(b)
    part = run_train(tiny_data, tmp_path, "--repro", "--compile", "--epochs", "3",
                     "--stop-after", "1", "--name", "part")
    # The resume takes --compile from the checkpoint, as every option that moves bits.
    args = train.get_args_parser().parse_args(["--resume", str(part), "--quiet"])
    assert train.main(args) == part
    assert comparable(part) == comparable(a)
    assert yaml.safe_load((a / "opt.yaml").read_text())["compile"] is True


def test_resume_uses_the_checkpoints_cfg_and_records_its_leg(tiny_data, tmp_path, capsys):
    cfg = tmp_path / "model.cfg"
    cfg.write_text(MICRO_CFG.read_text())
    straight = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--cfg", str(cfg),
                         "--name", "straight")
    part = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--stop-after", "1",
                     "--cfg", str(cfg), "--name", "part")
    cfg.write_text(MICRO_CFG.read_text().replace("filters=32", "filters=48"))
    train.main(train.get_args_parser().parse_args(["--resume", str(part), "--quiet"]))
    assert f"WARNING: {cfg} changed since the run started" in capsys.readouterr().out
    assert comparable(part) == comparable(straight)
    record = yaml.safe_load((part / "repro.yaml").read_text())
    assert [leg["epoch"] for leg in record["resumes"]] == [1]
    assert record["resumes"][0]["environment"]["device"] == "cpu"


def test_resume_of_a_repro_run_refuses_changed_data(tiny_data, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(tiny_data.parent, root)
    data = root / tiny_data.name
    part = run_train(data, tmp_path, "--repro", "--epochs", "2", "--stop-after", "1")
    (root / "labels" / "train" / "000003.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    args = train.get_args_parser().parse_args(["--resume", str(part)])
    with pytest.raises(InputError, match="the train files changed since the run started"):
        train.main(args)


def test_test_script_applies_the_runs_determinism(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--repro", "--epochs", "1")
    configure_determinism(False, threads=1)  # as a fresh process or another run leaves it
    args = test_script.get_args_parser().parse_args(
        ["--weights", str(run / "weights" / "last.pt"), "--batch-size", "4"])
    test_script.main(args)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == REPRO_THREADS and not torch.backends.cudnn.allow_tf32


def test_resume_refuses_a_changed_batch_size(tiny_data, tmp_path):
    part = run_train(tiny_data, tmp_path, "--repro", "--epochs", "2", "--stop-after", "1")
    args = train.get_args_parser().parse_args(["--resume", str(part), "--batch-size", "2"])
    with pytest.raises(Exception, match="--batch-size 2 differs from the checkpoint's 4"):
        train.main(args)


def test_workers_do_not_change_a_repro_run(tiny_data, tmp_path):
    zero = run_train(tiny_data, tmp_path, "--repro", "--augment", "--name", "w0")
    two = run_train(tiny_data, tmp_path, "--repro", "--augment", "--workers", "2", "--name", "w2")
    assert comparable(zero) == comparable(two)


def test_test_script_gives_trainings_map_and_pycocotools_agrees(tiny_data, tmp_path, capsys):
    run = run_train(tiny_data, tmp_path, "--epochs", "3", "--repro")
    last = read_results(run)[-1].values
    weights = run / "weights" / "last.pt"
    args = test_script.get_args_parser().parse_args(
        ["--weights", str(weights), "--batch-size", "4", "--device", "cpu", "--save-json"])
    result = test_script.main(args)
    assert result.map50 == last["mAP@0.5"] and result.map50_95 == last["mAP@0.5:0.95"]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in \
        capsys.readouterr().out
    # COCOeval on the files --save-json wrote, as they are: the same 12 numbers.
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(weights.with_suffix(".ground_truth.json")))
        coco = COCOeval(truth, truth.loadRes(str(weights.with_suffix(".detections.json"))),
                        "bbox")
        coco.evaluate()
        coco.accumulate()
        coco.summarize()
    assert result.coco["AP50"] > 0
    np.testing.assert_allclose(list(result.coco.values()), coco.stats, rtol=0, atol=5e-4)
    assert truth.loadCats(truth.getCatIds())[2]["name"] == "triangle"


def test_detect_writes_images_and_labels(tiny_data, tmp_path, capsys):
    run = run_train(tiny_data, tmp_path, "--epochs", "1")
    source = tiny_data.parent / "images" / "val"
    args = detect.get_args_parser().parse_args(
        ["--weights", str(run / "weights" / "best.pt"), "--source", str(source),
         "--project", str(tmp_path / "detect"), "--conf-thres", "0.0001", "--save-txt",
         "--save-conf"])
    out = detect.main(args)
    images = sorted(source.glob("*.png"))
    assert sorted(p.stem for p in out.glob("*.jpg")) == [p.stem for p in images]
    labels = [(out / "labels" / f"{p.stem}.txt").read_text() for p in images]
    rows = np.array([line.split() for text in labels for line in text.splitlines()], float)
    assert len(rows) and set(rows[:, 0].astype(int)) <= {0, 1, 2, 3}
    assert ((rows[:, 1:5] >= 0) & (rows[:, 1:5] <= 1)).all() and (rows[:, 5] >= 0.0001).all()
    printed = capsys.readouterr().out
    assert any(name in printed for name in ("circle", "rectangle", "triangle", "star"))
    assert cv2.imread(str(out / f"{images[0].stem}.jpg")).shape == (64, 64, 3)


def test_an_epoch_not_evaluated_reads_nan_not_zero(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--notest", "--epochs", "2")
    first, last = read_results(run)
    assert np.isnan(first.values["mAP@0.5"]) and np.isnan(first.values["P"])
    assert not np.isnan(last.values["mAP@0.5"])  # the final epoch is always evaluated
