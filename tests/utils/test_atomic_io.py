import os

import pytest
import torch

from utils.atomic_io import atomic_torch_save, atomic_write_text


def test_text_is_replaced_whole(tmp_path):
    path = tmp_path / "results.txt"
    atomic_write_text(path, "old\n")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["results.txt"]  # no temporary file left behind


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
