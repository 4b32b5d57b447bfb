import os

import pytest
import torch

from utils.base.atomic_io import (
    atomic_same_file,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
)


def test_text_is_replaced_whole(tmp_path):
    path = tmp_path / "results.txt"
    atomic_write_text(path, "old\n")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["results.txt"]  # no temporary file left behind
    atomic_write_bytes(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes" and os.listdir(tmp_path) == ["results.txt"]


def test_a_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "last.pt"
    atomic_torch_save({"epoch": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save({"epoch": 2, "bad": Unpicklable()}, path)
    assert torch.load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


@pytest.mark.parametrize("can_link", [True, False])
def test_same_file_keeps_its_bytes_when_the_source_is_rewritten(tmp_path, monkeypatch, can_link):
    if not can_link:
        def refuse(*_args):
            raise OSError("no hard links here")
        monkeypatch.setattr(os, "link", refuse)
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    atomic_torch_save({"epoch": 3}, last)
    atomic_torch_save({"epoch": 1}, best)
    atomic_same_file(last, best)
    assert torch.load(best)["epoch"] == 3
    atomic_torch_save({"epoch": 4}, last)  # the next epoch: best.pt must stay at epoch 3
    assert torch.load(best)["epoch"] == 3 and torch.load(last)["epoch"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
