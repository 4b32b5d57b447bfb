"""Shared fixtures: a tiny generated dataset (helpers live in tests/helpers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_data_file
from utils.data.shapes import generate_shapes


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """16 train + 8 val shapes images of 64 px, and their .data file."""
    root = tmp_path_factory.mktemp("tiny")
    generate_shapes(root, n_train=16, n_val=8, size=64, seed=0)
    return write_data_file(root)
