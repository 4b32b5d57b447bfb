"""Shared fixtures: a tiny generated dataset and a helper that runs train.py in-process."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.shapes import CLASS_NAMES, generate_shapes  # noqa: E402

MICRO_CFG = Path(__file__).resolve().parent / "data" / "micro.cfg"


def write_data_file(folder: Path, train: str = "images/train", valid: str = "images/val") -> Path:
    (folder / "tiny.names").write_text("\n".join(CLASS_NAMES) + "\n")
    data = folder / "tiny.data"
    data.write_text(f"classes={len(CLASS_NAMES)}\ntrain={train}\nvalid={valid}\n"
                    "names=tiny.names\n")
    return data


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """16 train + 8 val shapes images of 64 px, and their .data file."""
    root = tmp_path_factory.mktemp("tiny")
    generate_shapes(root, n_train=16, n_val=8, size=64, seed=0)
    return write_data_file(root)


def train_args(data: Path, project: Path, *extra: str):
    import train
    argv = ["--cfg", str(MICRO_CFG), "--data", str(data), "--img-size", "64", "--batch-size", "4",
            "--epochs", "2", "--project", str(project), "--quiet", *extra]
    return train.get_args_parser().parse_args(argv)


def run_train(data: Path, project: Path, *extra: str) -> Path:
    import train
    return train.main(train_args(data, project, *extra))


def comparable(run: Path) -> list:
    """Every results.txt value but the memory column, and the fingerprint, per epoch: what two
    runs that reproduce each other must share."""
    from utils.results import NOT_COMPARED, read_results
    return [({k: v for k, v in r.values.items() if k not in NOT_COMPARED}, r.fingerprint)
            for r in read_results(run)]
