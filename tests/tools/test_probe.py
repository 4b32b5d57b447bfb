import pytest
import torch

from tests.helpers import run_train
from tools.probe import get_args_parser, main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory):
    run = run_train(tiny_data, tmp_path_factory.mktemp("probe"), "--repro", "--epochs", "1")
    return run / "weights" / "last.pt"


def _probe(capsys, tmp_path, *argv):
    code = main(get_args_parser().parse_args([*map(str, argv), "--out", str(tmp_path)]))
    return code, capsys.readouterr()


def test_identical_settings_match_everywhere(checkpoint, tmp_path, capsys):
    code, out = _probe(capsys, tmp_path, checkpoint, "--a", "threads=2", "--repeat")
    assert code == 0
    assert "every layer matched" in out.out
    assert (tmp_path / "probe.png").stat().st_size > 0


def test_perturbed_layer_is_the_first_difference(checkpoint, tmp_path, capsys):
    code, out = _probe(capsys, tmp_path, checkpoint, "--a", "threads=2",
                       "--b", "threads=2,perturb=7")
    assert code == 1
    assert "forward: first difference at layer 7 (Conv2d+BatchNorm2d+LeakyReLU)" in out.out
    # Layers before it are untouched; the one after it differs too.
    rows = [line.split() for line in out.out.splitlines() if line.strip()[:1].isdigit()]
    assert all(float(r[2]) == 0 for r in rows[:7]) and float(rows[8][2]) > 0


def test_upsample_kinds_part_in_the_backward_pass_only(checkpoint, tmp_path, capsys):
    """nn.Upsample and the expand+reshape upsample give the same forward bits; their backward
    sums each window in another order (REPRO_FACTS), first seen at the conv feeding the
    upsample (layer 13 of the micro model, upsample at 14)."""
    code, out = _probe(capsys, tmp_path, checkpoint, "--a", "upsample=nn",
                       "--b", "upsample=deterministic")
    assert code == 1
    assert "forward: every layer output identical" in out.out
    assert ("backward: gradients first differ at layer 13 (Conv2d+BatchNorm2d+LeakyReLU)"
            in out.out)
    assert "although every forward output was identical" in out.out


def test_bad_setting_exits_2(checkpoint, tmp_path, capsys):
    code, out = _probe(capsys, tmp_path, checkpoint, "--a", "colour=blue")
    assert code == 2 and "expected key=value" in out.err


def test_the_probe_runs_the_requested_precision(checkpoint, tmp_path, capsys):
    code, out = _probe(capsys, tmp_path, checkpoint, "--a", "precision=fp32",
                       "--b", "precision=bf16")
    assert code == 1 and "precision: a fp32, b bf16" in out.out
    assert "forward: first difference at layer 0" in out.out


def test_an_input_that_already_differs_is_named_as_the_cause():
    from tools.probe import Trace, compare, format_table
    x = torch.zeros(1, 3, 2, 2)
    a = Trace(outputs=[x.clone()], loss=1.0, types=["Conv2d"], sources=[[]], model_input=x)
    b = Trace(outputs=[x + 1], loss=1.0, types=["Conv2d"], sources=[[]], model_input=x + 1e-7)
    result = compare(a, b)
    text = format_table(result)
    assert result["first_forward"] is None and not result["matched"]
    assert "the input already differs" in text and "although its input was identical" not in text
