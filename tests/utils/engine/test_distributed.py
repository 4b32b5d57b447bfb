"""The collective steps of utils/engine/distributed.py without torchrun: the process group's
timeout and device, the epoch's figures over the processes (2 gloo processes), and which
process makes the built-in data. The torchrun runs are in tests/test_distributed.py."""
from __future__ import annotations

import datetime

import pytest
import torch

from tests.helpers import in_two_gloo_processes
from utils.base.errors import InputError
from utils.engine import training_setup
from utils.engine.distributed import (
    DistInfo,
    epoch_over_ranks,
    group_arguments,
    timeout_minutes,
)


def test_the_timeout_outlasts_rank_0s_evaluation_and_can_be_set():
    assert timeout_minutes({}) == 30
    assert timeout_minutes({"DIST_TIMEOUT_MINUTES": "90"}) == 90
    for bad in ("0", "-1", "soon"):
        with pytest.raises(InputError, match="DIST_TIMEOUT_MINUTES"):
            timeout_minutes({"DIST_TIMEOUT_MINUTES": bad})


def test_device_id_is_given_on_a_gpu_where_torch_takes_it():
    def new_init(backend, timeout=None, device_id=None):
        pass

    def old_init(backend, timeout=None):  # a torch before 2.3
        pass

    on_gpu = group_arguments(True, 3, {}, new_init)
    assert on_gpu == {"timeout": datetime.timedelta(minutes=30),
                      "device_id": torch.device("cuda", 3)}
    assert group_arguments(True, 3, {}, old_init) == {"timeout": datetime.timedelta(minutes=30)}
    assert "device_id" not in group_arguments(False, 0, {}, new_init)  # gloo on the CPU
    # This torch (2.11 on the lent GPU machine, 2.14 here) takes it.
    assert "device_id" in group_arguments(True, 0, {})


def test_one_process_keeps_its_figures_to_the_bit():
    sums = torch.tensor([0.1, 0.2, 0.3, 0.6])
    out, targets = epoch_over_ranks(sums, 7)
    assert out is sums and targets == 7


def _reduce(rank: int) -> tuple[list[float], int]:
    sums = torch.tensor([1.0, 2.0]) * (rank + 1)  # rank 0: 1, 2; rank 1: 2, 4
    out, targets = epoch_over_ranks(sums, 3 + rank)
    return out.tolist(), targets


def test_two_processes_write_the_global_batchs_losses_and_targets():
    """Before, results.txt held rank 0's share: its losses and its last batch's targets."""
    assert in_two_gloo_processes(_reduce) == [([1.5, 3.0], 7), ([1.5, 3.0], 7)]


def test_each_nodes_first_process_makes_the_data_while_the_others_wait(monkeypatch):
    """Before, only global rank 0 made it: on a second node with its own disk, every local
    process found it missing and generated it into one folder at once."""
    calls = []
    monkeypatch.setattr(training_setup, "prepare_data",
                        lambda path: calls.append(("prepare", path)) or "config")
    monkeypatch.setattr(training_setup, "barrier", lambda info: calls.append(("barrier",)))
    second_node_first = DistInfo(rank=2, world_size=4, local_rank=0, backend="gloo")
    assert training_setup.prepare_data_once("x.data", second_node_first) == "config"
    assert calls == [("prepare", "x.data"), ("barrier",)]
    calls.clear()
    second_node_other = DistInfo(rank=3, world_size=4, local_rank=1, backend="gloo")
    assert training_setup.prepare_data_once("x.data", second_node_other) == "config"
    assert calls == [("barrier",), ("prepare", "x.data")]
