import dataclasses
import os

import pytest
import torch

import train
from tests.helpers import MICRO_CFG, hyp_with, poor_anchors_cfg, run_train, train_args
from utils.base.errors import InputError
from utils.data.augment import AUGMENT_KEYS
from utils.data.data_config import prepare_data
from utils.data.hyp import DEFAULT_HYP
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


def test_portable_plan_leaves_the_thread_count_free_and_trains_in_nchw(tiny_data, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr("utils.engine.plan._check_portable_start", lambda: None)
    _, plan = _plan(tiny_data, tmp_path, "--portable")
    assert plan.threads is None and plan.portable and plan.fixed_order_loss
    assert plan.memory_format == torch.contiguous_format
    assert plan.record()["portable_recipe"] == 2
    assert any("the same bits at any count" in n for n in plan.notes)
    assert _plan(tiny_data, tmp_path, "--portable", "--threads", "3")[1].threads == 3
    # The process count still decides the bits: said, not silently different.
    args = train_args(tiny_data, tmp_path, "--portable")
    options, ckpt, run_dir = resolve_options(args, train.get_args_parser())
    two = make_plan(options, ckpt, run_dir, prepare_data(tiny_data), device=CPU,
                    dist=DistInfo(rank=0, world_size=2, local_rank=0, backend="gloo"))
    assert any(n.startswith("WARNING: --portable under 2 processes: the same bits at 2 "
                            "processes only") for n in two.notes)
    assert not any("processes only" in n for n in plan.notes)
    _, repro = _plan(tiny_data, tmp_path, "--repro")
    assert repro.memory_format == torch.channels_last and not repro.fixed_order_loss
    assert "portable_recipe" not in repro.record()


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


def test_autoanchor_is_planned_for_a_new_run_and_off_with_noautoanchor(tiny_data, tmp_path):
    scratch = ("--hyp", "data/hyp.scratch.yaml")  # scale_x_y 1: the cfg file as it is
    _, plan = _plan(tiny_data, tmp_path, *scratch)
    assert plan.autoanchor.before.bpr >= 0.98 and not plan.autoanchor.fitted
    assert plan.cfg_text is None and not any("autoanchor" in n for n in plan.notes)
    _, plan = _plan(tiny_data, tmp_path, "--noautoanchor", *scratch)
    assert plan.autoanchor is None and plan.cfg_text is None and plan.record()["noautoanchor"]
    cfg = poor_anchors_cfg(tmp_path)
    for extra in ((), ("--repro",)):  # --repro keeps it on: the fit draws from the seed
        _, plan = _plan(tiny_data, tmp_path, "--cfg", str(cfg), *extra)
        assert plan.autoanchor.kept and plan.cfg_text == plan.autoanchor.cfg_text
        # The fit is made on the cfg as the run adapts it: the own recipe's scale_x_y stays.
        assert plan.cfg_text.count("scale_x_y=2\n") == 2
        assert any(n.startswith("autoanchor: anchors fitted") for n in plan.notes)


def test_the_own_recipe_writes_its_scale_x_y_into_the_layers_that_set_none(tiny_data,
                                                                           tmp_path):
    _, plan = _plan(tiny_data, tmp_path)  # no hyp=: data/hyp.own.yaml, scale_x_y 2
    assert plan.base_hyp["scale_x_y"] == 2.0 and not plan.autoanchor.fitted
    assert plan.cfg_text == MICRO_CFG.read_text().replace("[yolo]\n", "[yolo]\nscale_x_y=2\n")
    assert any(n.startswith("cfg: scale_x_y=2 written in 2 [yolo] layers") for n in plan.notes)
    own = tmp_path / "own.cfg"  # a layer that sets its own keeps it
    own.write_text(MICRO_CFG.read_text().replace("[yolo]\n", "[yolo]\nscale_x_y=1.05\n", 1))
    _, plan = _plan(tiny_data, tmp_path, "--cfg", str(own))
    assert plan.cfg_text.count("scale_x_y=1.05") == 1 and plan.cfg_text.count("scale_x_y=2") == 1


def test_the_own_recipe_closes_mosaic_for_the_last_ten_epochs(tiny_data, tmp_path):
    # Measured on three real sets (docs/measurements/own_data.md): kept at 10.
    _, plan = _plan(tiny_data, tmp_path, "--epochs", "50")  # no hyp=: data/hyp.own.yaml
    assert plan.base_hyp["close_mosaic"] == 10 and plan.mosaic_epochs == 40
    assert any(n.startswith("mosaic off from epoch 40 (the hyp's close_mosaic 10") for n in
               plan.notes)
    _, short = _plan(tiny_data, tmp_path, "--epochs", "8")  # shorter than 10: never a mosaic
    assert short.mosaic_epochs == 0


def test_the_default_run_keeps_its_anchors_and_so_its_bits():
    """`python train.py` (the built-in set, yolov3-tiny, 224 px): the cfg's anchors reach a BPR
    of 1.0 there, so autoanchor fits nothing and the model is built from the cfg file as
    before (docs/measurements/anchors.md)."""
    from tests.helpers import ROOT
    parser = train.get_args_parser()
    options, _, _ = resolve_options(parser.parse_args([]), parser)
    data = prepare_data(ROOT / options.data)
    plan = make_plan(dataclasses.replace(options, cfg=str(ROOT / options.cfg)), None, None, data,
                     device=CPU)
    assert plan.autoanchor.before.bpr == 1.0 and not plan.autoanchor.fitted
    assert plan.cfg_text is None and plan.autoanchor.boxes == 1340


def test_own_data_gets_the_own_data_recipe_and_a_warning_when_it_cannot_learn(tiny_data,
                                                                             tmp_path):
    from utils.data.hyp import DEFAULT_HYP
    _, plan = _plan(tiny_data, tmp_path)
    assert plan.options.hyp == str(DEFAULT_HYP) and DEFAULT_HYP.name == "hyp.own.yaml"
    assert plan.recipe["why"] == "the own-data default"
    # 16 images at batch 4, nominal batch 16: one optimizer step every 4 batches, 2 epochs.
    assert plan.accumulate == 4 and plan.recipe["optimizer_steps"] == 2
    assert "2 optimizer steps" in plan.recipe["warning"] and "nbs" in plan.recipe["warning"]
    _, given = _plan(tiny_data, tmp_path, "--hyp", "data/hyp.scratch.yaml", "--epochs", "400",
                     "--batch-size", "1")
    # nbs 64 at batch 1: one step every 64 batches, or at the epoch's last of its 16 batches.
    assert given.recipe["why"] == "--hyp" and given.recipe["optimizer_steps"] == 400
    assert given.recipe["warning"] is None


def test_optimizer_steps_count_the_last_partial_batch():
    from utils.engine.plan import optimizer_steps
    # hyp.scratch.yaml on the raccoon set: 10 batches an epoch, a step every 4 and at the end.
    assert optimizer_steps(157, 16, 4, 50) == 150
    assert optimizer_steps(157, 16, 1, 50) == 500
    assert optimizer_steps(500, 8, 1, 17) == 1071  # the built-in default run


def test_close_mosaic_is_planned_from_the_run_length_and_said(tiny_data, tmp_path):
    hyp = hyp_with(DEFAULT_HYP, tmp_path / "hyp.yaml", close_mosaic=3)
    _, plan = _plan(tiny_data, tmp_path, "--hyp", str(hyp), "--epochs", "5")
    assert plan.mosaic_epochs == 2
    assert ("mosaic off from epoch 2 (the hyp's close_mosaic 3: single images for the run's "
            "last 3 epochs)") in plan.notes
    # Longer than the run: no epoch has mosaic. --repro turns mosaic off, so there is none to close.
    assert _plan(tiny_data, tmp_path, "--hyp", str(hyp), "--epochs", "2")[1].mosaic_epochs == 0
    _, repro = _plan(tiny_data, tmp_path, "--hyp", str(hyp), "--repro")
    assert repro.mosaic_epochs is None and not any("mosaic off from" in n for n in repro.notes)
    never = hyp_with(DEFAULT_HYP, tmp_path / "never.yaml", close_mosaic=0)
    assert _plan(tiny_data, tmp_path, "--hyp", str(never))[1].mosaic_epochs is None
