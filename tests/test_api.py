"""train.run, test.run and detect.run: the scripts from Python, through their own parsers."""
from __future__ import annotations

import pytest

import detect
import test as test_script
import train
from tests.helpers import MICRO_CFG, comparable, run_train
from utils.base.api import args_from_keywords
from utils.base.errors import InputError


def test_keywords_become_the_command_line():
    args = args_from_keywords(train.get_args_parser(), {
        "epochs": 3, "batch_size": 4, "repro": True, "tb": False, "amp": None}, "train")
    expected = train.get_args_parser().parse_args(["--epochs", "3", "--batch-size", "4",
                                                   "--repro", "--no-tb"])
    assert args == expected
    classes = args_from_keywords(detect.get_args_parser(), {"weights": "w", "classes": [0, 2]},
                                 "detect")
    assert classes.classes == [0, 2]


def test_an_unknown_keyword_or_a_bad_value_is_refused_with_its_name():
    with pytest.raises(InputError, match="train.run\\(\\): unknown option 'epoch'"):
        train.run(epoch=3)
    with pytest.raises(InputError, match="test.run\\(\\): .*invalid int value: 'many'"):
        test_script.run(weights="w", batch_size="many")


@pytest.mark.slow
def test_the_three_scripts_from_python(tiny_data, tmp_path):
    run = train.run(cfg=str(MICRO_CFG), data=str(tiny_data), img_size=64, batch_size=4,
                    epochs=2, project=str(tmp_path), quiet=True, repro=True)
    assert comparable(run) == comparable(run_train(tiny_data, tmp_path, "--repro"))
    result = test_script.run(weights=str(run / "weights" / "last.pt"), quiet=True,
                             plots=False)
    assert set(result.coco) >= {"AP", "AP50"} and len(result.coco) == 12
    folder, detections = detect.run(weights=str(run / "weights" / "last.pt"),
                                    source=str(tiny_data.parent / "images" / "val"),
                                    project=str(tmp_path / "detect"), conf_thres=0.001)
    assert folder.is_dir() and len(detections) == 8
    assert all(d.shape[1] == 6 for d in detections.values())
