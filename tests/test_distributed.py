"""DDP under torchrun with gloo on the CPU: 2 processes, tiny cfg and data."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import MICRO_CFG, ROOT, comparable, run_train
from tools.drift import build_report
from utils.engine.results import read_results

pytestmark = pytest.mark.slow


def _torchrun(data, project, name, *extra, processes=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
           "--standalone", "train.py", "--cfg", str(MICRO_CFG), "--data", str(data),
           "--img-size", "64", "--batch-size", "4", "--epochs", "2", "--device", "cpu",
           "--project", str(project), "--name", name, "--quiet", "--threads", "1", *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return project / name, done.stdout



def test_two_process_repro_runs_are_identical_and_rank0_writes(tiny_data, tmp_path):
    a, out = _torchrun(tiny_data, tmp_path, "a", "--repro")
    b, _ = _torchrun(tiny_data, tmp_path, "b", "--repro")
    assert [r.epoch for r in read_results(a)] == [0, 1]  # one results.txt, one line an epoch
    assert out.count("epoch 0/1") == 1                      # only rank 0 prints
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert comparable(a) == comparable(b)
    # World size 1 against 2: the drift report names the difference in its settings.
    single = run_train(tiny_data, tmp_path, "--repro", "--threads", "1", "--name", "single")
    report, _ = build_report([str(single), str(a)], 0.0)
    settings = {d["setting"]: (d["a"], d["b"]) for d in report["pairs"][0]["settings_differences"]}
    assert settings["world_size"] == (1, 2) and settings["backend"] == (None, "gloo")


def test_resume_under_ddp(tiny_data, tmp_path):
    straight, _ = _torchrun(tiny_data, tmp_path, "straight", "--repro", "--epochs", "3")
    part, _ = _torchrun(tiny_data, tmp_path, "part", "--repro", "--epochs", "3",
                        "--stop-after", "1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", "train.py", "--resume", str(part), "--quiet"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert comparable(part) == comparable(straight)
