"""utils.engine.options: the command line as a run uses it, and what --resume keeps or refuses."""
import dataclasses

import pytest

import train
from tests.helpers import MICRO_CFG, run_train
from utils.base.errors import InputError
from utils.engine.options import RunOptions, resolve_options


def test_options_mirror_the_parser_exactly():
    parser = train.get_args_parser()
    assert {f.name for f in dataclasses.fields(RunOptions)} == set(vars(parser.parse_args([])))


def test_resume_keeps_the_runs_options_and_honours_the_safe_ones(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--stop-after", "1")
    parser = train.get_args_parser()
    args = parser.parse_args(["--resume", str(run), "--notest", "--nosave", "--workers", "1"])
    options, ckpt, run_dir = resolve_options(args, parser)
    assert options.repro and options.epochs == 3 and options.cfg == str(MICRO_CFG)
    assert options.notest and options.nosave and options.workers == 1 and run_dir == run
    for refused in (["--name", "other"], ["--weights", "x.pt"], ["--project", "elsewhere"]):
        with pytest.raises(InputError, match="differs from the checkpoint's"):
            resolve_options(parser.parse_args(["--resume", str(run), *refused]), parser)


def test_resume_messages_name_the_real_cause(tiny_data, tmp_path):
    parser = train.get_args_parser()

    def resume(path, *extra):
        return resolve_options(parser.parse_args(["--resume", str(path), *extra]), parser)

    finished = run_train(tiny_data, tmp_path, "--epochs", "1", "--name", "done")
    with pytest.raises(InputError, match="already finished all 1 epochs"):
        resume(finished)
    started = tmp_path / "started"
    (started / "weights").mkdir(parents=True)
    (started / "opt.yaml").write_text("epochs: 2\n")
    with pytest.raises(InputError, match="has no weights/last.pt yet"):
        resume(started)
    cut = tmp_path / "cut" / "weights" / "last.pt"
    cut.parent.mkdir(parents=True)
    (cut.parent.parent / "opt.yaml").write_text("epochs: 2\n")
    cut.write_bytes((finished / "weights" / "last.pt").read_bytes()[:5000])
    with pytest.raises(InputError) as err:
        resume(cut)
    assert "truncated" in str(err.value) and str(err.value).endswith(")")
