import dataclasses
import os

import pytest
import torch

import train
from tests.helpers import MICRO_CFG, run_train, train_args
from utils.base.errors import InputError
from utils.data.augment import AUGMENT_KEYS
from utils.data.data_config import prepare_data
from utils.engine.run_plan import REPRO_THREADS, RunOptions, make_plan, resolve_options

CPU = torch.device("cpu")


def _plan(data_file, project, *extra, device=CPU):
    args = train_args(data_file, project, *extra)
    options, ckpt, run_dir = resolve_options(args, train.get_args_parser())
    return args, make_plan(options, ckpt, run_dir, prepare_data(data_file), device)


def test_options_mirror_the_parser_exactly():
    parser = train.get_args_parser()
    assert {f.name for f in dataclasses.fields(RunOptions)} == set(vars(parser.parse_args([])))


def test_repro_plan_pins_and_says_so_without_touching_the_parsed_options(tiny_data, tmp_path):
    args, plan = _plan(tiny_data, tmp_path, "--repro", "--multi-scale")
    before = dict(vars(args))
    assert all(plan.base_hyp[k] == 0 for k in AUGMENT_KEYS) and not plan.augment
    assert any("augmentation off: " in n and "fliplr" in n for n in plan.notes)
    assert plan.workers == 0 and plan.threads == REPRO_THREADS and not plan.multi_scale
    assert plan.upsample == "deterministic" and plan.drop_last and plan.deterministic
    assert plan.precision == "fp32" and "--repro" in plan.precision_reason
    assert vars(args) == before and args.multi_scale and args.workers is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.workers = 3
    with pytest.raises(TypeError):
        plan.hyp["lr0"] = 1.0


def test_ordinary_plan_keeps_augmentation_and_scales_the_gains(tiny_data, tmp_path):
    _, plan = _plan(tiny_data, tmp_path, "--hyp", "data/hyp.scratch.yaml")
    assert plan.augment and not plan.deterministic and plan.upsample == "nearest"
    assert plan.hyp["obj"] == pytest.approx(plan.base_hyp["obj"] * (64 / 640) ** 2 * 3 / 2)
    assert plan.accumulate == round(plan.base_hyp["nbs"] / 4)
    assert plan.record()["hyp"] == "data/hyp.scratch.yaml"


def test_workers_follow_device_and_cache(tiny_data, tmp_path, monkeypatch):
    # Cached images cost less to augment than workers cost the step in contention.
    assert _plan(tiny_data, tmp_path)[1].workers == 0
    assert _plan(tiny_data, tmp_path, "--workers", "3")[1].workers == 3
    monkeypatch.setattr("utils.engine.run_plan.AUTO_CACHE_BYTES", 10)
    assert _plan(tiny_data, tmp_path)[1].workers == min(2, os.cpu_count() or 1)
    assert _plan(tiny_data, tmp_path, device=torch.device("cuda", 0))[1].workers == \
        min(8, os.cpu_count() or 1)


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


def test_a_changed_class_count_is_named_on_resume(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--epochs", "2", "--stop-after", "1")
    parser = train.get_args_parser()
    options, ckpt, run_dir = resolve_options(parser.parse_args(["--resume", str(run)]), parser)
    data = prepare_data(tiny_data)
    data = dataclasses.replace(data, num_classes=3, names=data.names[:3])
    with pytest.raises(InputError, match="classes changed: the .data file now has 3 classes"):
        make_plan(options, ckpt, run_dir, data, CPU)


def test_compile_plans_its_shape_mode_and_refuses_what_it_cannot_do(tiny_data, tmp_path,
                                                                      monkeypatch):
    assert _plan(tiny_data, tmp_path)[1].compile is None
    assert _plan(tiny_data, tmp_path, "--compile")[1].compile == "static"
    assert _plan(tiny_data, tmp_path, "--compile", "--multi-scale")[1].compile == "automatic"
    # --repro turns multi-scale off: its batches keep one shape.
    _, plan = _plan(tiny_data, tmp_path, "--compile", "--repro", "--multi-scale")
    assert plan.compile == "static" and any("torch.compile" in n for n in plan.notes)
    args = train_args(tiny_data, tmp_path, "--compile")
    options, _, _ = resolve_options(args, train.get_args_parser())
    with pytest.raises(InputError, match="under DDP"):
        make_plan(options, None, None, prepare_data(tiny_data), CPU, world_size=2)
    monkeypatch.setattr("utils.engine.run_plan.shutil.which", lambda _name: None)
    with pytest.raises(InputError, match="needs a C\\+\\+ compiler"):
        _plan(tiny_data, tmp_path, "--compile")
