"""autoanchor end to end: a new run whose cfg anchors fit its labels poorly trains with fitted ones;
two --repro runs fit the same anchors and give the same fingerprints; the anchors travel in the
checkpoint's cfg_text to --resume (which fits nothing), to tools.convert_weights' .cfg and to the
ONNX file; a set too small to fit is refused before any training, and --noautoanchor trains."""
from __future__ import annotations

import contextlib
import copy
import io
import shutil

import numpy as np
import pytest
import torch
import yaml

import train
from models import Darknet
from models.darknet import cfg_anchors
from tests.helpers import MICRO_CFG, comparable, poor_anchors_cfg, run_train
from tools import convert_weights
from utils.base.errors import InputError
from utils.data.data_config import prepare_data
from utils.engine.checkpoint import load_checkpoint, load_initial_weights, model_from_checkpoint
from utils.engine.options import resolve_options
from utils.engine.plan import make_plan

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


def _layer_anchors(cfg_text: str) -> list[np.ndarray]:
    slots, layers = cfg_anchors(cfg_text)
    return [slots[indices] for indices in layers]


@pytest.fixture(scope="module")
def fitted_runs(tiny_data, tmp_path_factory):
    """Run a (--repro, stopped after epoch 0, then resumed) and run b (--repro, straight
    through), both on the poor-anchors cfg; what each step printed and planned."""
    root = tmp_path_factory.mktemp("autoanchor")
    cfg = poor_anchors_cfg(root)
    project = root / "runs"
    with contextlib.redirect_stdout(io.StringIO()) as started:
        a = run_train(tiny_data, project, "--cfg", str(cfg), "--repro", "--stop-after", "1",
                      "--name", "a")
    parser = train.get_args_parser()
    options, ckpt, run_dir = resolve_options(parser.parse_args(["--resume", str(a)]), parser)
    resumed_plan = make_plan(options, ckpt, run_dir, prepare_data(tiny_data), device=CPU)
    with contextlib.redirect_stdout(io.StringIO()) as resumed:
        train.main(parser.parse_args(["--resume", str(a), "--quiet"]))
    b = run_train(tiny_data, project, "--cfg", str(cfg), "--repro", "--name", "b")
    return {"cfg": cfg, "a": a, "b": b, "root": root, "resumed_plan": resumed_plan,
            "cfg_text_after_epoch_0": ckpt["cfg_text"], "started": started.getvalue(),
            "resumed": resumed.getvalue()}


def test_two_repro_runs_fit_the_same_anchors_and_bits(fitted_runs):
    a, b = fitted_runs["a"], fitted_runs["b"]
    record = yaml.safe_load((a / "repro.yaml").read_text())["autoanchor"]
    assert record == yaml.safe_load((b / "repro.yaml").read_text())["autoanchor"]
    assert record["kept"] and record["bpr_before"] < 0.5 <= 0.98 <= record["bpr_after"]
    assert record["generations"] == 1000 and record["img_size"] == 64
    assert comparable(a) == comparable(b) and len(comparable(a)) == 2
    ckpt = load_checkpoint(a / "weights" / "last.pt")
    assert ckpt["cfg_text"] == load_checkpoint(b / "weights" / "last.pt")["cfg_text"]
    slots, _ = cfg_anchors(ckpt["cfg_text"])
    assert slots.tolist() == record["anchors_after"]
    model = model_from_checkpoint(ckpt, a / "weights" / "last.pt")
    for theirs, ours in zip(_layer_anchors(ckpt["cfg_text"]), model.anchors()):
        torch.testing.assert_close(ours, torch.tensor(theirs, dtype=torch.float32))


def test_the_run_says_what_it_fitted(fitted_runs):
    started = fitted_runs["started"]
    assert "repro: autoanchor: anchors fitted to the training labels (BPR 0." in started
    assert "autoanchor: BPR below 0.98: 6 anchors fitted (k-means, then 1000 generations" in \
        started
    assert "autoanchor: kept: the cfg's anchors= lines rewritten" in started


def test_a_resume_keeps_the_checkpoints_anchors_and_fits_nothing(fitted_runs):
    plan, a = fitted_runs["resumed_plan"], fitted_runs["a"]
    assert plan.autoanchor is None and plan.cfg_text is None
    assert fitted_runs["cfg_text_after_epoch_0"] == \
        load_checkpoint(a / "weights" / "last.pt")["cfg_text"]
    # The cfg file still has its poor anchors: not a changed cfg, the run's own fitted copy.
    assert "autoanchor:" not in fitted_runs["resumed"]
    assert "changed since the run started" not in fitted_runs["resumed"]
    assert f"Resuming {a} from epoch 1" in fitted_runs["resumed"]
    parser = train.get_args_parser()
    with pytest.raises(InputError, match="--noautoanchor True differs from the checkpoint's "
                                         "False"):
        train.main(parser.parse_args(["--resume", str(a), "--noautoanchor"]))


def test_the_converted_cfg_and_the_onnx_file_carry_the_fitted_anchors(fitted_runs):
    onnxruntime = pytest.importorskip("onnxruntime")
    export = pytest.importorskip("tools.export")
    weights = fitted_runs["a"] / "weights" / "last.pt"
    root = fitted_runs["root"]
    ckpt = load_checkpoint(weights)
    convert_weights.main(convert_weights.get_args_parser().parse_args(
        [str(weights), str(root / "fitted.weights")]))
    converted = (root / "fitted.cfg").read_text()
    for theirs, ours in zip(_layer_anchors(converted), _layer_anchors(ckpt["cfg_text"])):
        np.testing.assert_array_equal(theirs, ours)
    assert export.main(export.get_args_parser().parse_args(
        [str(weights), str(root / "fitted.onnx")])) == 0
    model = model_from_checkpoint(ckpt, weights).eval()
    poor = copy.deepcopy(model)  # the same weights with the cfg file's anchors
    for head, anchors in zip(poor.heads, _layer_anchors(fitted_runs["cfg"].read_text())):
        head.anchors.copy_(torch.tensor(anchors))
    images = export.parity_input(64)
    session = onnxruntime.InferenceSession(str(root / "fitted.onnx"),
                                           providers=["CPUExecutionProvider"])
    theirs = session.run(["detections"], {"images": images.numpy()})[0]
    with torch.no_grad():
        fitted_boxes, poor_boxes = model(images)[0].numpy(), poor(images)[0].numpy()
    np.testing.assert_allclose(theirs[..., 2:4], fitted_boxes[..., 2:4], rtol=1e-4, atol=1e-3)
    assert np.abs(theirs[..., 2:4] - poor_boxes[..., 2:4]).max() > 1.0  # pixels


def test_weights_from_a_fitted_run_leave_the_new_cfgs_anchors(fitted_runs):
    model = Darknet(MICRO_CFG)
    before = [a.clone() for a in model.anchors()]
    lines = load_initial_weights(model, fitted_runs["a"] / "weights" / "last.pt")
    assert all(torch.equal(a, b) for a, b in zip(before, model.anchors()))
    assert lines[-1] == "kept the cfg's anchors, not the weights' (2 yolo layers differ)"


def test_too_few_boxes_to_fit_is_refused_before_training_and_noautoanchor_trains(tiny_data,
                                                                                tmp_path):
    root = tmp_path / "few"
    shutil.copytree(tiny_data.parent / "images", root / "images")
    (root / "labels" / "train").mkdir(parents=True)
    shutil.copytree(tiny_data.parent / "labels" / "val", root / "labels" / "val")
    (root / "labels" / "train" / "000000.txt").write_text("0 0.5 0.5 0.3 0.3\n1 0.2 0.2 0.1 0.1\n")
    shutil.copy(tiny_data.parent / "tiny.names", root)
    data = shutil.copy(tiny_data, root)
    cfg = poor_anchors_cfg(tmp_path)
    with pytest.raises(InputError) as err:
        run_train(data, tmp_path / "runs", "--cfg", str(cfg))
    assert "only 2 label boxes are 2 px or more, fewer than the cfg's 6 anchors" in str(err.value)
    assert "train with --noautoanchor to keep the cfg's anchors" in str(err.value)
    assert not (tmp_path / "runs").exists()  # refused before the run folder
    run = run_train(data, tmp_path / "runs", "--cfg", str(cfg), "--noautoanchor", "--epochs", "1")
    record = yaml.safe_load((run / "repro.yaml").read_text())
    assert record["autoanchor"] is None and record["options"]["noautoanchor"] is True
    # The cfg's own anchors; the own-data recipe's scale_x_y is written in all the same.
    from models.darknet import scaled_cfg_text
    assert load_checkpoint(run / "weights" / "last.pt")["cfg_text"] == \
        scaled_cfg_text(cfg.read_text(), 2.0)[0]
