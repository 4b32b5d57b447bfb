import shutil
import sys

import pytest

import train
from tests.helpers import run_train
from utils.base.errors import InputError
from utils.engine.options import resolve_options
from utils.engine.restart import needs_restart, restart_command


def _options(*argv):
    parser = train.get_args_parser()
    return resolve_options(parser.parse_args(list(argv)), parser)[0]


def test_an_abbreviated_repro_restarts_too():
    # argparse takes --repr for --repro; the restart reads the resolved options, not argv.
    assert needs_restart(_options("--repr"), environ={})
    assert not needs_restart(_options("--repr"), environ={"PYTHONHASHSEED": "0"})
    assert not needs_restart(_options(), environ={})


def test_a_resumed_repro_run_restarts_from_its_checkpoint(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--repro", "--epochs", "2", "--stop-after", "1")
    (run / "opt.yaml").write_text("repro: false\n")  # the checkpoint decides, not this file
    assert needs_restart(_options("--resume", str(run)), environ={})
    assert needs_restart(_options("--resume", str(run / "weights" / "last.pt")), environ={})


def test_a_checkpoint_outside_its_run_folder_is_refused_before_training(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--epochs", "2", "--stop-after", "1")
    moved = tmp_path / "elsewhere" / "last.pt"
    moved.parent.mkdir()
    shutil.copy(run / "weights" / "last.pt", moved)
    with pytest.raises(InputError, match="not in a run folder's weights/"):
        _options("--resume", str(moved))
    assert not (tmp_path / "results.txt").exists()


def test_restart_keeps_interpreter_flags(monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-u", "-X", "dev", "train.py", "--repro"])
    assert restart_command() == [sys.executable, "-u", "-X", "dev", "train.py", "--repro"]
