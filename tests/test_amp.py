"""Mixed precision: reproducible run to run, exact on resume, and fp32 where it is not native."""
from __future__ import annotations

import pytest
import yaml

import train
import utils.engine.precision
from tests.helpers import comparable, run_train
from utils.engine.checkpoint import load_checkpoint
from utils.engine.precision import cpu_native_bf16

pytestmark = pytest.mark.slow
EXPECTED = "bf16" if cpu_native_bf16()[0] else "fp32"


def _precision(run):
    return yaml.safe_load((run / "repro.yaml").read_text())["precision"]


def test_two_amp_runs_are_identical_and_differ_from_fp32(tiny_data, tmp_path):
    a = run_train(tiny_data, tmp_path, "--repro", "--amp", "--epochs", "3", "--name", "a")
    b = run_train(tiny_data, tmp_path, "--repro", "--amp", "--epochs", "3", "--name", "b")
    assert _precision(a) == EXPECTED
    assert comparable(a) == comparable(b)
    fp32 = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--name", "fp32")
    assert _precision(fp32) == "fp32"  # --repro defaults to fp32
    if EXPECTED == "bf16":
        assert comparable(fp32)[0][1] != comparable(a)[0][1]


def test_amp_resume_equals_a_straight_run(tiny_data, tmp_path):
    straight = run_train(tiny_data, tmp_path, "--repro", "--amp", "--epochs", "3",
                         "--name", "straight")
    part = run_train(tiny_data, tmp_path, "--repro", "--amp", "--epochs", "3", "--stop-after",
                     "1", "--name", "part")
    assert "scaler" in load_checkpoint(part / "weights" / "last.pt")
    train.main(train.get_args_parser().parse_args(["--resume", str(part), "--quiet"]))
    assert comparable(part) == comparable(straight)


def test_without_native_bf16_it_trains_in_fp32_and_says_so(tiny_data, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.setattr(utils.engine.precision, "cpu_native_bf16",
                        lambda: (False, "no avx512_bf16 or AMX instructions"))
    run = run_train(tiny_data, tmp_path, "--epochs", "1")  # ordinary: amp where native
    out = capsys.readouterr().out
    assert ("precision: fp32 (mixed precision off: the CPU has no avx512_bf16 or AMX "
            "instructions, so bf16 would be emulated and slower)") in out
    assert _precision(run) == "fp32"


def test_precision_is_pinned_on_resume(tiny_data, tmp_path):
    part = run_train(tiny_data, tmp_path, "--repro", "--epochs", "2", "--stop-after", "1")
    args = train.get_args_parser().parse_args(["--resume", str(part), "--amp"])
    with pytest.raises(Exception, match="--amp True differs from the checkpoint's None"):
        train.main(args)
