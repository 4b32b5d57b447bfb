"""A group started by tools/seed_group.py, compared with tools.compare_groups."""
import pytest

from tests.helpers import MICRO_CFG
from tools import compare_groups, seed_group
from utils.base.errors import InputError

pytestmark = pytest.mark.slow


def _group(out, tiny_data, *extra):
    argv = ["--seeds", "2", "--out", str(out), "--", "--cfg", str(MICRO_CFG), "--data",
            str(tiny_data), "--img-size", "64", "--batch-size", "4", "--epochs", "1", "--quiet",
            *extra]
    return seed_group.main(seed_group.get_args_parser().parse_args(argv))


def test_two_groups_from_the_script(tiny_data, tmp_path, capsys):
    a = _group(tmp_path / "base", tiny_data)
    b = _group(tmp_path / "adam", tiny_data, "--adam")
    assert [r.name for r in a] == ["seed0", "seed1"] and all((r / "results.txt").is_file()
                                                            for r in a + b)
    code = compare_groups.main(compare_groups.get_args_parser().parse_args(
        ["--a", str(tmp_path / "base"), "--b", str(tmp_path / "adam"), "--out", str(tmp_path)]))
    out = capsys.readouterr().out
    assert code in (0, 1) and "options.adam: A False; B True" in out
    assert "runs differ in" not in out  # within a group only the seed differs
    with pytest.raises(InputError, match="exist already"):
        _group(tmp_path / "base", tiny_data)


def test_the_script_sets_the_seed_itself(tmp_path):
    args = seed_group.get_args_parser().parse_args(["--out", str(tmp_path), "--", "--seed", "4"])
    with pytest.raises(InputError, match="--seed: set by this script"):
        seed_group.main(args)
