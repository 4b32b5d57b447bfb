"""tools.anchors: the analysis a new training prints about its anchors, without training: the
same numbers and the same fitted anchors; bad input exits 2 with its message."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.helpers import MICRO_CFG, ROOT, poor_anchors_cfg
from tools import anchors
from utils.base.errors import InputError
from utils.data.data_config import prepare_data
from utils.engine.autoanchor import plan_anchors


def _run(*argv) -> int:
    return anchors.main(anchors.get_args_parser().parse_args([str(a) for a in argv]))


def test_anchors_that_fit_are_said_to(tiny_data, capsys):
    assert _run(tiny_data, "--cfg", MICRO_CFG, "--img-size", "64") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("46 label boxes at 64 px, anchor_t 4: the cfg's anchors 6,6 10,12")
    assert out[1] == "BPR 1.0000 >= 0.98: the cfg's anchors fit the data, kept"
    assert len(out) == 2


def test_the_anchors_printed_are_those_a_training_fits(tiny_data, tmp_path, capsys):
    cfg = poor_anchors_cfg(tmp_path)
    assert _run(tiny_data, "--cfg", cfg, "--img-size", "64", "--seed", "3") == 0
    out = capsys.readouterr().out
    check = plan_anchors(str(cfg), prepare_data(tiny_data), 64, 4, False, 4.0, 3)
    assert out.splitlines() == check.lines() + [
        "the fitted anchors as a cfg line: anchors="
        + ",  ".join(f"{w:g},{h:g}" for w, h in check.anchors_after)]
    assert "BPR below 0.98: 6 anchors fitted" in out and "seed 3" in out


def test_fit_fits_anchors_that_pass(tiny_data, capsys):
    assert _run(tiny_data, "--cfg", MICRO_CFG, "--img-size", "64", "--fit") == 0
    out = capsys.readouterr().out
    assert "--fit: 6 anchors fitted" in out and "a training keeps the cfg's anchors" in out
    assert "the fitted anchors as a cfg line: anchors=" in out


def test_bad_input_is_refused(tiny_data, tmp_path):
    with pytest.raises(InputError, match="--img-size 100: must be a positive multiple of 32"):
        _run(tiny_data, "--cfg", MICRO_CFG, "--img-size", "100")
    with pytest.raises(InputError, match="cfg file not found"):
        _run(tiny_data, "--cfg", tmp_path / "none.cfg")


def test_a_set_without_labels_exits_2_naming_noautoanchor(tiny_data, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(tiny_data.parent / "images", root / "images")
    shutil.copy(tiny_data.parent / "tiny.names", root)
    data = shutil.copy(tiny_data, root)
    done = subprocess.run([sys.executable, "-m", "tools.anchors", str(data), "--cfg",
                           str(MICRO_CFG), "--img-size", "64"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: {data}: autoanchor: the 16 training images hold no "
                                  "label boxes")
    assert "train with --noautoanchor to keep the cfg's anchors" in done.stderr
