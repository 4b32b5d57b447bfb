"""End-to-end: train.py, test.py and detect.py on a tiny generated dataset and a micro model."""
from __future__ import annotations

import argparse

import pytest
from torch import nn

import detect
import test as test_script
import train
from conftest import comparable, run_train
from utils.checkpoint import load_checkpoint, model_from_checkpoint
from utils.datasets import AUGMENT_KEYS
from utils.hyp import load_hyp
from utils.options import REPRO_THREADS, apply_repro
from utils.results import COLUMNS, read_results



def test_smoke_training_writes_its_files(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path)
    for name in ("results.txt", "results.png", "opt.yaml", "hyp.yaml", "repro.yaml",
                 "train_batch0.jpg", "val_predictions.jpg", "weights/last.pt", "weights/best.pt"):
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


def test_resume_refuses_a_changed_batch_size(tiny_data, tmp_path):
    part = run_train(tiny_data, tmp_path, "--repro", "--epochs", "2", "--stop-after", "1")
    args = train.get_args_parser().parse_args(["--resume", str(part), "--batch-size", "2"])
    with pytest.raises(Exception, match="--batch-size 2 differs from the checkpoint's 4"):
        train.main(args)


def test_workers_do_not_change_a_repro_run(tiny_data, tmp_path):
    zero = run_train(tiny_data, tmp_path, "--repro", "--augment", "--name", "w0")
    two = run_train(tiny_data, tmp_path, "--repro", "--augment", "--workers", "2", "--name", "w2")
    assert comparable(zero) == comparable(two)


def test_apply_repro_turns_off_augmentation_and_says_so():
    args = argparse.Namespace(repro=True, augment=False, seed=0, batch_size=8, multi_scale=True,
                              workers=None, threads=None)
    hyp = load_hyp()
    notes = apply_repro(args, hyp)
    assert all(hyp[k] == 0 for k in AUGMENT_KEYS)
    assert any("augmentation off: " in n and "fliplr" in n and "mosaic" in n for n in notes)
    assert args.workers == 0 and args.multi_scale is False and args.threads == REPRO_THREADS


def test_test_script_gives_trainings_map(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--epochs", "2", "--repro")
    last = read_results(run)[-1].values
    args = test_script.get_args_parser().parse_args(
        ["--weights", str(run / "weights" / "last.pt"), "--batch-size", "4", "--device", "cpu"])
    result = test_script.main(args)
    assert result.map50 == last["mAP@0.5"] and result.map == last["mAP@0.5:0.95"]


def test_detect_writes_images(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--epochs", "1")
    source = tiny_data.parent / "images" / "val"
    args = detect.get_args_parser().parse_args(
        ["--weights", str(run / "weights" / "best.pt"), "--source", str(source),
         "--project", str(tmp_path / "detect"), "--conf-thres", "0.01", "--save-txt"])
    out = detect.main(args)
    assert len(list(out.glob("*.jpg"))) == len(list(source.glob("*.png")))
    assert len(list(out.glob("*.txt"))) == len(list(source.glob("*.png")))
