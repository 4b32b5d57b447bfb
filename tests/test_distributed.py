"""DDP under torchrun with gloo on the CPU: 2 processes, tiny cfg and data."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.helpers import MICRO_CFG, ROOT, comparable, run_train
from tools.drift import build_report
from utils.engine.results import read_results

pytestmark = pytest.mark.slow


def _train_args(data, project, name, *extra) -> list[str]:
    return ["train.py", "--cfg", str(MICRO_CFG), "--data", str(data), "--img-size", "64",
            "--batch-size", "4", "--epochs", "2", "--device", "cpu", "--project", str(project),
            "--name", name, "--quiet", "--threads", "1", *extra]


def _torchrun(data, project, name, *extra, processes=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
           "--standalone", *_train_args(data, project, name, *extra)]
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_give_the_bits_of_one_node_with_two_processes(tiny_data, tmp_path):
    """Two torchrun launches of one process each, as two nodes would start them (static
    rendezvous at 127.0.0.1), against one launch of two processes: the same ranks, the same
    shares of each batch, the same bits (gloo on the CPU; measured 2026-12-06 on the AMD
    EPYC: the same fingerprints d9f648b2cc964dfa, fdafd1384c92d1ff)."""
    one_node, _ = _torchrun(tiny_data, tmp_path, "one_node", "--repro")
    port = str(_free_port())
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
         str(rank), "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port",
         port, *_train_args(tiny_data, tmp_path, "two_nodes", "--repro")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)]
    try:
        outputs = [node.communicate(timeout=300)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one_node", "two_nodes"]
    assert comparable(tmp_path / "two_nodes") == comparable(one_node)
