"""A run written before the RunPlan refactor (commit 32ab0b2: a --repro micro training stopped
after epoch 0, kept in tests/data/run_before_plan) still resumes, and loads in test.py,
detect.py, the probe and the drift report."""
from __future__ import annotations

import shutil

import pytest

import detect
import test as test_script
import train
from tests.helpers import MICRO_CFG, ROOT
from tools import drift, probe
from utils.data.shapes import CLASS_NAMES, generate_shapes
from utils.engine.checkpoint import load_checkpoint
from utils.engine.results import read_results

pytestmark = pytest.mark.slow
FIXTURE = ROOT / "tests" / "data" / "run_before_plan"


@pytest.fixture
def old_run(tmp_path, monkeypatch):
    """The old run in a folder laid out as it was made: its options name micro.cfg,
    hyp.scratch.yaml and fixture_data/tiny.data relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(MICRO_CFG, "micro.cfg")
    shutil.copy(ROOT / "data" / "hyp.scratch.yaml", "hyp.scratch.yaml")
    data = tmp_path / "fixture_data"
    generate_shapes(data, n_train=16, n_val=8, size=64, seed=0)
    (data / "tiny.names").write_text("\n".join(CLASS_NAMES) + "\n")
    (data / "tiny.data").write_text(f"classes={len(CLASS_NAMES)}\ntrain=images/train\n"
                                    "valid=images/val\nnames=tiny.names\n")
    run = tmp_path / "runs" / "old"
    shutil.copytree(FIXTURE, run)
    return run


def test_an_old_run_resumes_and_keeps_its_first_epoch(old_run, capsys):
    before = read_results(old_run)
    train.main(train.get_args_parser().parse_args(["--resume", str(old_run), "--quiet"]))
    after = read_results(old_run)
    assert [r.epoch for r in after] == [0, 1]
    assert after[0].fingerprint == before[0].fingerprint == "25d374739d8fcfce"
    # Its hyp predates label_smoothing and mixup: they are filled with their off values, said,
    # and its hyp file (which has them now, off) still counts as the one it started with.
    out = capsys.readouterr().out
    assert ("hyp from before label_smoothing, mixup, scale_x_y, close_mosaic: filled with their "
            "off values (label_smoothing 0, mixup 0, scale_x_y 1, close_mosaic 0)") in out
    assert "files changed since the run started" not in out
    hyp = load_checkpoint(old_run / "weights" / "last.pt")["hyp"]
    assert (hyp["label_smoothing"], hyp["mixup"]) == (0.0, 0.0)


def test_an_old_checkpoint_loads_in_test_detect_probe_and_drift(old_run, tmp_path, capsys):
    weights = old_run / "weights" / "last.pt"
    result = test_script.main(test_script.get_args_parser().parse_args(
        ["--weights", str(weights), "--batch-size", "4", "--device", "cpu"]))
    # Not its results.txt's mAP to the bit: the stride-1 max pool now ignores the border as
    # darknet does (docs/measurements/drift.md, "Bits that moved on purpose").
    assert result.images == 8 and 0 < result.map50 < 0.05
    out = detect.main(detect.get_args_parser().parse_args(
        ["--weights", str(weights), "--source", "fixture_data/images/val",
         "--project", str(tmp_path / "detect")]))
    assert len(list(out.glob("*.jpg"))) == 8
    assert probe.main(probe.get_args_parser().parse_args(
        [str(weights), "--a", "threads=2", "--repeat", "--out", str(tmp_path)])) == 0
    assert drift.main(drift.get_args_parser().parse_args(
        [str(old_run), str(FIXTURE), "--out", str(tmp_path)])) == 0
    assert "identical to the last bit" in capsys.readouterr().out
