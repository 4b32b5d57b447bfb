"""Nothing is lost: kills, SIGTERM and non-finite losses leave a resumable run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import train
import utils.engine.loop
from tests.helpers import MICRO_CFG, ROOT, comparable, run_train, train_args
from utils.engine.checkpoint import load_checkpoint
from utils.engine.results import read_results

pytestmark = pytest.mark.slow


def _start(data: Path, project: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "train.py", "--cfg", str(MICRO_CFG), "--data", str(data),
           "--img-size", "64", "--batch-size", "4", "--project", str(project), "--quiet",
           "--repro", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait_for_epochs(results: Path, count: int, proc: subprocess.Popen, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if results.is_file() and len(results.read_text().splitlines()) > count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early:\n{proc.stdout.read()}")
        time.sleep(0.02)
    raise AssertionError("training too slow")


def test_sigkill_mid_epoch_then_resume_equals_straight_run(tiny_data, tmp_path):
    straight = run_train(tiny_data, tmp_path / "a", "--repro", "--epochs", "4")
    proc = _start(tiny_data, tmp_path / "b", "--epochs", "4")
    run = tmp_path / "b" / "exp"
    _wait_for_epochs(run / "results.txt", 1, proc)  # epoch 0 written: now inside epoch 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = read_results(run)
    assert kept and kept[-1].epoch < 3  # killed before the end
    # Resumed as a user types it, with an interpreter flag: it is a --repro run all the same.
    resumed = subprocess.run([sys.executable, "-u", "train.py", "--resume", str(run), "--quiet"],
                             cwd=ROOT, capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    leg = yaml.safe_load((run / "repro.yaml").read_text())["resumes"][-1]["environment"]
    assert leg["PYTHONHASHSEED"] == "0"
    assert [r.epoch for r in read_results(run)] == [0, 1, 2, 3]  # none lost, none twice
    assert comparable(run) == comparable(straight)


def test_sigterm_stops_cleanly_and_says_what_was_kept(tiny_data, tmp_path):
    proc = _start(tiny_data, tmp_path, "--epochs", "50")
    run = tmp_path / "exp"
    _wait_for_epochs(run / "results.txt", 1, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Interrupted during epoch" in out and f"--resume {run}" in out
    epoch = load_checkpoint(run / "weights" / "last.pt")["epoch"]
    assert [r.epoch for r in read_results(run)] == list(range(epoch + 1))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch,
                                                             capsys):
    calls = {"n": 0}
    real = utils.engine.loop.yolo_loss

    def loss_that_breaks(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 4:  # after epoch 0 (4 batches of 4 images)
            loss = loss * float("nan")
        return loss, parts

    monkeypatch.setattr(utils.engine.loop, "yolo_loss", loss_that_breaks)
    with pytest.raises(SystemExit) as stop:
        train.main(train_args(tiny_data, tmp_path, "--repro", "--epochs", "3"))
    assert stop.value.code == 1
    out = capsys.readouterr().out
    assert "non-finite loss nan at epoch 1, batch 0" in out
    assert load_checkpoint(tmp_path / "exp" / "weights" / "last.pt")["epoch"] == 0
    assert len(read_results(tmp_path / "exp")) == 1


def test_an_interrupt_during_the_checkpoint_write_exits_130_with_a_whole_file(
        tiny_data, tmp_path, monkeypatch):
    """torch's writer turns a KeyboardInterrupt raised inside it into a RuntimeError about its
    zip container; the save below does the same. The signal must wait for the write."""
    import torch
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the Python handler runs here unless the signal is held
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") \
                from None
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    # Python maps SIGINT to KeyboardInterrupt only when it did not start with SIGINT ignored,
    # as a shell's background job (`pytest &`, nohup) does: a user's Ctrl-C, whatever started us.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as stop:
            run_train(tiny_data, tmp_path, "--epochs", "2")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stop.value.code == 130
    run = tmp_path / "exp"
    assert load_checkpoint(run / "weights" / "last.pt")["epoch"] == 0
    assert [r.epoch for r in read_results(run)] == [0]
