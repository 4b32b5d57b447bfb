import dataclasses
import os

import pytest
import torch

import train
from tests.helpers import run_train, train_args
from utils.base.errors import InputError
from utils.data.augment import AUGMENT_KEYS
from utils.data.data_config import prepare_data
from utils.engine.distributed import DistInfo
from utils.engine.options import REPRO_THREADS, resolve_options
from utils.engine.plan import make_plan

CPU = torch.device("cpu")


def _plan(data_file, project, *extra, device=CPU):
    args = train_args(data_file, project, *extra)
    options, ckpt, run_dir = resolve_options(args, train.get_args_parser())
    return args, make_plan(options, ckpt, run_dir, prepare_data(data_file), device=device)


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
    monkeypatch.setattr("utils.engine.plan.AUTO_CACHE_BYTES", 10)
    assert _plan(tiny_data, tmp_path)[1].workers == min(2, os.cpu_count() or 1)
    assert _plan(tiny_data, tmp_path, device=torch.device("cuda", 0))[1].workers == \
        min(8, os.cpu_count() or 1)


def test_a_changed_class_count_is_named_on_resume(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--epochs", "2", "--stop-after", "1")
    parser = train.get_args_parser()
    options, ckpt, run_dir = resolve_options(parser.parse_args(["--resume", str(run)]), parser)
    data = prepare_data(tiny_data)
    data = dataclasses.replace(data, num_classes=3, names=data.names[:3])
    with pytest.raises(InputError, match="classes changed: the .data file now has 3 classes"):
        make_plan(options, ckpt, run_dir, data, device=CPU)


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
        make_plan(options, None, None, prepare_data(tiny_data), DistInfo(world_size=2), device=CPU)
    monkeypatch.setattr("utils.engine.plan.shutil.which", lambda _name: None)
    with pytest.raises(InputError, match="needs a C\\+\\+ compiler"):
        _plan(tiny_data, tmp_path, "--compile")
