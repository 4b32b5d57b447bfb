"""End-to-end: --freeze, --patience, --save-period, --image-weights, and the label_smoothing and
mixup hyperparameters, on the micro model (issue 35)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

import test as test_script
import train
from models import Darknet
from tests.helpers import MICRO_CFG, ROOT, comparable, hyp_with, run_train
from tools import convert_weights
from utils.base.errors import InputError
from utils.data.hyp import DEFAULT_HYP
from utils.engine.checkpoint import load_checkpoint, load_initial_weights
from utils.engine.results import read_results

pytestmark = pytest.mark.slow
BACKBONE = 9  # the micro model's layers 0..8 come before its first head (yolo layer 11)


def _resume(run, *extra):
    return train.main(train.get_args_parser().parse_args(["--resume", str(run), "--quiet",
                                                          *extra]))


def _backbone_cut(tiny_data, tmp_path):
    """A darknet backbone cut of a trained micro model, as tools.convert_weights writes one."""
    base = run_train(tiny_data, tmp_path, "--repro", "--epochs", "1", "--name", "base")
    cut = tmp_path / f"micro.conv.{BACKBONE}"
    convert_weights.main(convert_weights.get_args_parser().parse_args(
        [str(base / "weights" / "last.pt"), str(cut)]))
    return cut


def test_frozen_backbone_keeps_every_bit_and_resumes_exactly(tiny_data, tmp_path):
    cut = _backbone_cut(tiny_data, tmp_path)
    common = ("--repro", "--epochs", "3", "--weights", str(cut), "--freeze", str(BACKBONE),
              "--save-period", "1")
    straight = run_train(tiny_data, tmp_path, *common, "--name", "straight")
    expected = Darknet(MICRO_CFG, num_classes=4)
    load_initial_weights(expected, cut)
    expected = expected.state_dict()
    first = load_checkpoint(straight / "weights" / "epoch0.pt")
    last = load_checkpoint(straight / "weights" / "last.pt")
    frozen = [k for k in expected if int(k.split(".")[1]) < BACKBONE]
    assert any("running_var" in k for k in frozen)
    for name in frozen:  # weights, batch-norm statistics and counters, raw and EMA
        for state in (first["model"], last["model"], last["ema"]["weights"]):
            assert torch.equal(state[name], expected[name]), name
    learned = [k for k in expected if k not in frozen and k.endswith("weight")]
    assert all(not torch.equal(first["model"][k], last["model"][k]) for k in learned)
    assert yaml.safe_load((straight / "opt.yaml").read_text())["freeze"] == str(BACKBONE)
    part = run_train(tiny_data, tmp_path, *common, "--stop-after", "1", "--name", "part")
    with pytest.raises(InputError, match="--freeze 3 differs from the checkpoint's 9"):
        _resume(part, "--freeze", "3")
    _resume(part)
    assert comparable(part) == comparable(straight)


@pytest.mark.parametrize("freeze, message", [
    ("30", "--freeze 30: the model has layers 0..18 (19 layers)"),
    ("0,11", "--freeze 0,11: layer 11 is a [yolo] layer"),
    ("12", "--freeze 12: layer 11 is a [yolo] layer"),
])
def test_bad_freeze_is_refused_before_training(tiny_data, tmp_path, freeze, message):
    command = [sys.executable, "train.py", "--cfg", str(MICRO_CFG), "--data", str(tiny_data),
               "--img-size", "64", "--batch-size", "4", "--project", str(tmp_path),
               "--freeze", freeze]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr + done.stdout
    assert not list(tmp_path.glob("exp*"))  # no run folder: nothing was trained


def test_patience_stops_where_a_resumed_run_stops(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "fitness", lambda map50, map_: 0.25)  # never improves
    common = ("--repro", "--epochs", "6", "--patience", "2")
    straight = run_train(tiny_data, tmp_path, *common, "--name", "straight")
    assert [r.epoch for r in read_results(straight)] == [0, 1, 2]
    stop = yaml.safe_load((straight / "repro.yaml").read_text())["stopped_early"]
    assert stop["epoch"] == 2 and "--patience 2" in stop["reason"]
    assert "Stopped early after epoch 2: --patience 2" in capsys.readouterr().out
    assert load_checkpoint(straight / "weights" / "last.pt")["stale_epochs"] == 2
    part = run_train(tiny_data, tmp_path, *common, "--stop-after", "2", "--name", "part")
    assert "stopped_early" not in yaml.safe_load((part / "repro.yaml").read_text())
    _resume(part)
    assert comparable(part) == comparable(straight)
    with pytest.raises(InputError, match="stopped early after epoch 2: its fitness did not "
                                         "improve in 2 evaluated epochs"):
        _resume(part)
    # --notest epochs are not evaluated, so they do not count.
    untested = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--patience", "1",
                         "--notest", "--name", "notest")
    assert [r.epoch for r in read_results(untested)] == [0, 1, 2]


def test_save_period_checkpoints_resume_and_test(tiny_data, tmp_path):
    straight = run_train(tiny_data, tmp_path, "--repro", "--epochs", "4", "--name", "straight")
    part = run_train(tiny_data, tmp_path, "--repro", "--epochs", "4", "--save-period", "1",
                     "--nosave", "--stop-after", "3", "--name", "part")
    weights = part / "weights"
    assert [load_checkpoint(weights / f"epoch{k}.pt")["epoch"] for k in range(3)] == [0, 1, 2]
    result = test_script.main(test_script.get_args_parser().parse_args(
        ["--weights", str(weights / "epoch1.pt"), "--batch-size", "4", "--device", "cpu"]))
    assert result.map50_95 == read_results(part)[1].values["mAP@0.5:0.95"]
    with pytest.raises(InputError, match="holds epoch 0, but the run has gone on to epoch 2"):
        _resume(weights / "epoch0.pt")
    (weights / "last.pt").unlink()  # lost: the kept epochs are what a resume can start from
    _resume(weights / "epoch1.pt")
    assert comparable(part) == comparable(straight)
    assert load_checkpoint(weights / "last.pt")["epoch"] == 3


def test_image_weights_repeat_resume_and_change_the_order(tiny_data, tmp_path):
    common = ("--repro", "--epochs", "3", "--image-weights")
    a = run_train(tiny_data, tmp_path, *common, "--name", "a")
    b = run_train(tiny_data, tmp_path, *common, "--name", "b")
    assert comparable(a) == comparable(b)
    part = run_train(tiny_data, tmp_path, *common, "--stop-after", "1", "--name", "part")
    _resume(part)
    assert comparable(part) == comparable(a)
    plain = run_train(tiny_data, tmp_path, "--repro", "--epochs", "1", "--name", "plain")
    assert comparable(plain)[0][1] != comparable(a)[0][1]
    assert yaml.safe_load((a / "opt.yaml").read_text())["image_weights"] is True


def test_label_smoothing_and_mixup_act_and_are_recorded(tiny_data, tmp_path):
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text(DEFAULT_HYP.read_text().replace("label_smoothing: 0.0",
                                                   "label_smoothing: 0.1")
                   .replace("mixup: 0.0", "mixup: 0.5"))
    plain = run_train(tiny_data, tmp_path, "--repro", "--augment", "--epochs", "1",
                      "--name", "plain")
    changed = run_train(tiny_data, tmp_path, "--repro", "--augment", "--epochs", "1",
                        "--hyp", str(hyp), "--name", "changed")
    assert comparable(plain)[0][1] != comparable(changed)[0][1]
    recorded = yaml.safe_load((changed / "hyp.yaml").read_text())
    assert (recorded["label_smoothing"], recorded["mixup"]) == (0.1, 0.5)
    # --repro without --augment turns mixup off (an augmentation) but keeps label smoothing.
    repro = run_train(tiny_data, tmp_path, "--repro", "--epochs", "1", "--hyp", str(hyp),
                      "--name", "repro")
    recorded = yaml.safe_load((repro / "hyp.yaml").read_text())
    assert (recorded["label_smoothing"], recorded["mixup"]) == (0.1, 0.0)
    notes = yaml.safe_load((repro / "repro.yaml").read_text())["repro"]
    assert any("augmentation off" in n and "mixup" in n for n in notes)


def test_close_mosaic_changes_only_the_closed_epochs_and_resumes_exactly(tiny_data, tmp_path):
    hyp = hyp_with(DEFAULT_HYP, tmp_path / "hyp.yaml", close_mosaic=1)
    never = hyp_with(DEFAULT_HYP, tmp_path / "never.yaml", close_mosaic=0)
    common = ("--repro", "--augment", "--epochs", "3")
    plain = run_train(tiny_data, tmp_path, *common, "--hyp", str(never), "--name", "plain")
    closed = run_train(tiny_data, tmp_path, *common, "--hyp", str(hyp), "--name", "closed")
    # Epochs 0 and 1 keep the bits of the run that never closes its mosaic; epoch 2 trains on
    # single images.
    assert comparable(closed)[:2] == comparable(plain)[:2]
    assert comparable(closed)[2] != comparable(plain)[2]
    part = run_train(tiny_data, tmp_path, *common, "--hyp", str(hyp), "--stop-after", "2",
                     "--name", "part")
    _resume(part)
    assert comparable(part) == comparable(closed)
    notes = yaml.safe_load((closed / "repro.yaml").read_text())["repro"]
    assert any(n.startswith("mosaic off from epoch 2") for n in notes)
