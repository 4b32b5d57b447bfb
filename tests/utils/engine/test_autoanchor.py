"""utils.engine.autoanchor: a new run's cfg anchors against its training labels, fitted below a
BPR of 0.98 and kept only when better, written into the cfg text; the refusals name
--noautoanchor."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from models.darknet import cfg_anchors
from tests.helpers import MICRO_CFG, POOR_ANCHORS, poor_anchors_cfg
from utils.base.errors import InputError
from utils.core.anchors import anchor_stats, letterboxed_wh
from utils.data.data_config import prepare_data
from utils.data.label_sizes import LabelSizes
from utils.data.labels import LabelReport
from utils.engine import autoanchor
from utils.engine.autoanchor import check_anchors, plan_anchors


def _sizes(wh, missing=0, empty=0) -> LabelSizes:
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    return LabelSizes(wh=wh, image_hw=np.full((len(wh), 2), 64.0),
                      files=(Path("set/images/a.png"),) * max(1, missing + empty),
                      report=LabelReport(missing=missing, empty=empty, boxes=len(wh)))


def _plan(cfg, data_file, seed=0):
    return plan_anchors(str(cfg), prepare_data(data_file), 64, 4, False, 4.0, seed)


def test_anchors_that_fit_are_kept_without_a_fit(tiny_data):
    check = _plan(MICRO_CFG, tiny_data)
    assert check.before.bpr >= 0.98 and not check.fitted and not check.kept
    assert check.cfg_text is None and check.anchors_after is None
    assert check.boxes > 0 and check.anchors_before[0] == (6.0, 6.0)
    record = check.record()
    assert yaml.safe_load(yaml.safe_dump(record)) == record
    assert record["bpr_after"] is None and record["kept"] is False
    assert "fit the data, kept" in check.lines()[-1]


def test_poor_anchors_are_fitted_written_and_repeat_from_the_seed(tiny_data, tmp_path):
    cfg = poor_anchors_cfg(tmp_path)
    check = _plan(cfg, tiny_data)
    assert check.before.bpr < 0.5 and check.fitted and check.kept
    assert check.after.bpr > check.before.bpr and check.after.bpr >= 0.98
    # The cfg text holds the anchors recorded, in ascending area, and they give the stats.
    slots, layers = cfg_anchors(check.cfg_text, cfg)
    assert check.anchors_after == tuple(map(tuple, slots.tolist()))
    assert list(slots.prod(1)) == sorted(slots.prod(1))
    assert check.cfg_text.count("\nanchors=") == 2 and POOR_ANCHORS not in check.cfg_text
    assert "mask = 3,4,5" in check.cfg_text and "mask = 0,1,2" in check.cfg_text
    again = _plan(cfg, tiny_data)
    assert again == check and again.record() == check.record()
    assert _plan(cfg, tiny_data, seed=1).anchors_after != check.anchors_after
    assert "kept: the cfg's anchors= lines rewritten" in check.lines()[-1]
    assert f"(BPR {check.before.bpr:.4f} -> {check.after.bpr:.4f})" in check.note()
    assert "--noautoanchor keeps the cfg's" in check.note()


def test_the_stats_are_measured_on_the_letterboxed_sizes(tmp_path):
    sizes = LabelSizes(wh=np.array([[0.25, 0.5], [0.1, 0.2]]),
                       image_hw=np.array([[100.0, 200.0], [64.0, 64.0]]),
                       files=(Path("a.png"),), report=LabelReport(boxes=2))
    check = check_anchors(MICRO_CFG.read_text(), MICRO_CFG, sizes, 64, 4.0, 0)
    slots, layers = cfg_anchors(MICRO_CFG.read_text())
    wh = letterboxed_wh(sizes.wh, sizes.image_hw, 64)  # [16, 16], [6.4, 12.8]
    used = np.concatenate([slots[i] for i in layers])
    assert check.before == anchor_stats(wh, used, 4.0)


def test_a_fit_no_better_than_the_cfgs_is_not_kept(tiny_data, tmp_path, monkeypatch):
    cfg = poor_anchors_cfg(tmp_path)
    worse = np.array([[1000, 2], [1001, 2], [1002, 2], [2, 1000], [2, 1001], [2, 1002]], float)
    monkeypatch.setattr(autoanchor, "fit_anchors", lambda *args, **kwargs: worse)
    check = _plan(cfg, tiny_data)
    assert check.fitted and not check.kept and check.cfg_text is None
    assert check.after.bpr <= check.before.bpr
    assert "not better than the cfg's: the cfg's anchors kept" in check.lines()[-1]
    assert check.record()["kept"] is False and check.record()["anchors_after"][0] == [1000, 2]


def test_no_label_boxes_is_refused_naming_the_option():
    with pytest.raises(InputError) as err:
        check_anchors(MICRO_CFG.read_text(), MICRO_CFG, _sizes([], missing=1), 64, 4.0, 0,
                      "set.data")
    message = str(err.value)
    assert message.startswith("set.data: autoanchor: the 1 training images hold no label boxes")
    assert "none has a label file (for set/images/a.png it would be set/labels/a.txt" in message
    assert message.endswith("train with --noautoanchor to keep the cfg's anchors")
    with pytest.raises(InputError, match=r"\(0 without a label file, 2 with an empty one\); "
                                         "train with --noautoanchor"):
        check_anchors(MICRO_CFG.read_text(), MICRO_CFG, _sizes([], empty=2), 64, 4.0, 0)


def test_fewer_boxes_than_anchors_is_refused_only_when_a_fit_is_needed(tmp_path):
    three = _sizes([[0.2, 0.2], [0.3, 0.25], [0.025, 0.025]])  # the last: 1.6 px at 64 px
    check = check_anchors(MICRO_CFG.read_text(), MICRO_CFG, three, 64, 4.0, 0)
    assert not check.fitted  # the cfg's anchors fit these boxes: nothing to fit, no refusal
    with pytest.raises(InputError) as err:
        check_anchors(poor_anchors_cfg(tmp_path).read_text(), "poor.cfg", three, 64, 4.0, 0,
                      "set.data")
    message = str(err.value)
    assert "below 0.98, so they would be fitted, but only 2 label boxes are 2 px or more, " \
           "fewer than the cfg's 6 anchors" in message
    assert message.endswith("add labels, or train with --noautoanchor to keep the cfg's anchors")


def test_a_forced_fit_says_what_a_training_would_do(tiny_data):
    data = prepare_data(tiny_data)
    check = plan_anchors(str(MICRO_CFG), data, 64, 4, False, 4.0, 0, generations=50, fit=True)
    assert check.fitted and check.before.bpr >= 0.98
    assert check.lines()[1].startswith("--fit: 6 anchors fitted")
    assert check.lines()[2].startswith("a training keeps the cfg's anchors (BPR >= 0.98)")
