"""test.py: the class setup (--single-cls, the checkpoint's own), --precision, darknet files,
--bootstrap, --compare and the plots (--plots, --plots-dir, a run folder's by default).

Checkpoints here are untrained micro models written as weights checkpoints with the run
metadata test.py reads, so no test trains."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import test as test_script
from models import Darknet
from models.darknet_weights import save_darknet_weights
from tests.helpers import MICRO_CFG
from utils.base.atomic_io import atomic_torch_save
from utils.base.errors import InputError
from utils.base.repro import state_fingerprint
from utils.engine.checkpoint import weights_checkpoint


def _checkpoint(path: Path, data: Path, num_classes: int, seed: int = 0, **run_args) -> Path:
    torch.manual_seed(seed)
    model = Darknet(MICRO_CFG, num_classes=num_classes)
    ckpt = weights_checkpoint(model, ["object"] if num_classes == 1 else None)
    ckpt.update(args={"precision": "fp32", **run_args}, data=str(data), img_size=64)
    atomic_torch_save(ckpt, path)
    return path


def _test(*argv) -> object:
    args = test_script.get_args_parser().parse_args(
        [*map(str, argv), "--batch-size", "4", "--device", "cpu", "--conf-thres", "0.0001"])
    return test_script.main(args)


def _json(weights: Path) -> tuple[list, dict]:
    return (json.loads(weights.with_suffix(".detections.json").read_text()),
            json.loads(weights.with_suffix(".ground_truth.json").read_text()))


def test_a_single_cls_run_is_evaluated_as_one_class_without_the_flag(tiny_data, tmp_path,
                                                                      capsys):
    weights = _checkpoint(tmp_path / "one.pt", tiny_data, 1, single_cls=True)
    result = _test("--weights", weights, "--save-json")
    assert "trained with --single-cls" in capsys.readouterr().out
    detections, truth = _json(weights)
    assert truth["categories"] == [{"id": 1, "name": "object"}]
    assert {a["category_id"] for a in truth["annotations"]} == {1}
    assert [c.name for c in result.per_class] == ["object"]
    assert result.labels == len(truth["annotations"]) > 0
    assert len(detections) > 0


def test_single_cls_on_a_multi_class_model_scores_its_boxes_as_one_class(tiny_data, tmp_path):
    weights = _checkpoint(tmp_path / "four.pt", tiny_data, 4)
    result = _test("--weights", weights, "--save-json", "--single-cls")
    detections, truth = _json(weights)
    assert truth["categories"] == [{"id": 1, "name": "object"}]
    assert {d["category_id"] for d in detections} == {1}
    assert [c.name for c in result.per_class] == ["object"]
    # One box per anchor (the best class stands for "object"), not one per class: the
    # detections are those of the model as a one-class model scores them, objectness alone.
    four = _test("--weights", weights, "--save-json")
    assert len(detections) < len(_json(weights)[0])
    assert four.labels == result.labels


def test_a_one_class_model_on_multi_class_data_needs_single_cls(tiny_data, tmp_path):
    weights = _checkpoint(tmp_path / "one.pt", tiny_data, 1)
    with pytest.raises(InputError, match="add --single-cls"):
        _test("--weights", weights)


def test_precision_overrides_the_checkpoints(tiny_data, tmp_path, capsys):
    weights = _checkpoint(tmp_path / "m.pt", tiny_data, 4)
    _test("--weights", weights, "--save-json")
    assert "precision: fp32 (the checkpoint's)" in capsys.readouterr().out
    fp32 = [d["score"] for d in _json(weights)[0]]
    _test("--weights", weights, "--save-json", "--precision", "bf16")
    assert "precision: bf16 (--precision)" in capsys.readouterr().out
    bf16 = [d["score"] for d in _json(weights)[0]]
    assert fp32 != bf16  # the forward pass ran in bf16
    _test("--weights", weights, "--save-json", "--precision", "fp32")
    assert [d["score"] for d in _json(weights)[0]] == fp32


def test_the_best_f1_threshold_is_printed_beside_p_and_r(tiny_data, tmp_path, capsys):
    """The table's P and R are read at the threshold of highest mean F1: test.py says which
    (the one a run's checkpoint keeps as detect.py's default), while its own --conf-thres,
    mAP's, stays low."""
    weights = _checkpoint(tmp_path / "m.pt", tiny_data, 4)
    result = _test("--weights", weights)
    out = capsys.readouterr().out
    assert result.f1 > 0 and result.f1_conf >= 0.0001  # the test's --conf-thres
    assert f"P and R at score threshold {result.f1_conf:.3f}, where the mean F1 is highest " \
           f"({result.f1:.3f})" in out
    assert test_script.get_args_parser().get_default("conf_thres") == 0.001


def test_darknet_weights_read_back_with_the_cfg_they_were_trained_from(tiny_data, tmp_path):
    # A cfg for 80 classes, trained on the 4-class data: the heads were adapted, as training
    # adapts them; reading the weights back must adapt the same cfg the same way.
    cfg80 = tmp_path / "micro80.cfg"
    cfg80.write_text(MICRO_CFG.read_text().replace("classes=4", "classes=80")
                     .replace("filters=27", "filters=255"))
    torch.manual_seed(0)
    model = Darknet(cfg80, num_classes=4)
    save_darknet_weights(model, tmp_path / "m.weights")
    ckpt = weights_checkpoint(model)
    ckpt.update(data=str(tiny_data), img_size=64)
    atomic_torch_save(ckpt, tmp_path / "m.pt")
    from_darknet = _test("--weights", tmp_path / "m.weights", "--cfg", cfg80,
                         "--data", tiny_data, "--img-size", 64)
    from_checkpoint = _test("--weights", tmp_path / "m.pt")
    assert from_darknet.coco == from_checkpoint.coco


def _intervals(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    return lines[start + 1:start + 13]


def test_bootstrap_prints_an_interval_beside_each_coco_number(tiny_data, tmp_path, capsys):
    weights = _checkpoint(tmp_path / "m.pt", tiny_data, 4)
    result = _test("--weights", weights, "--bootstrap", 50, "--seed", 3)
    rows = _intervals(capsys.readouterr().out, "image bootstrap: 50 resamples")
    assert [row.split()[0] for row in rows] == list(result.coco)
    for row, value in zip(rows, result.coco.values()):
        assert float(row.split()[1]) == pytest.approx(value, abs=1e-4)
        assert (".." in row) == (value != -1) and ("nothing to measure" in row) == (value == -1)
    _test("--weights", weights, "--bootstrap", 50, "--seed", 3)
    assert _intervals(capsys.readouterr().out, "image bootstrap: 50 resamples") == rows
    with pytest.raises(InputError, match="--bootstrap 0: at least 1"):
        _test("--weights", weights, "--bootstrap", 0)


def test_compare_gives_b_minus_a_on_the_same_images_with_a_verdict(tiny_data, tmp_path,
                                                                   capsys):
    a = _checkpoint(tmp_path / "a.pt", tiny_data, 4)
    b = _checkpoint(tmp_path / "b.pt", tiny_data, 4, seed=1)
    _test("--weights", a, "--compare", b, "--bootstrap", 40)
    out = capsys.readouterr().out
    rows = _intervals(out, "B - A on the same images: paired bootstrap, 40 resamples")
    assert rows[0].split()[0] == "AP" and len(rows) == 12
    verdicts = out.split("verdict:")[1].strip().splitlines()
    assert len(verdicts) == 13 and "not of the trainings that made them" in verdicts[-1]
    verdicts = verdicts[:12]
    assert all("within image noise" in v or "larger than the images' sampling noise" in v
               or "cannot tell" in v for v in verdicts)
    _test("--weights", a, "--compare", a, "--bootstrap", 40)
    out = capsys.readouterr().out
    assert "AP: within image noise: difference +0, 95% interval +0 to +0" in out


def test_compare_refuses_models_that_score_other_classes(tiny_data, tmp_path):
    a = _checkpoint(tmp_path / "a.pt", tiny_data, 4)
    one = _checkpoint(tmp_path / "one.pt", tiny_data, 1, single_cls=True)
    with pytest.raises(InputError, match="measure different things"):
        _test("--weights", a, "--compare", one)


@pytest.mark.parametrize("flag, value, message", [
    ("--batch-size", "0", "--batch-size 0: must be at least 1"),
    ("--batch-size", "-1", "--batch-size -1: must be at least 1"),
    ("--img-size", "0", "--img-size 0: must be a positive multiple of 32"),
    ("--threads", "0", "--threads 0: must be at least 1"),
])
def test_options_out_of_range_are_refused_not_replaced(tiny_data, tmp_path, flag, value, message):
    weights = _checkpoint(tmp_path / "a.pt", tiny_data, 4)
    args = test_script.get_args_parser().parse_args(
        ["--weights", str(weights), "--device", "cpu", flag, value])
    with pytest.raises(InputError, match=message):
        test_script.main(args)


def test_cfg_with_a_checkpoint_is_refused_not_ignored(tiny_data, tmp_path):
    weights = _checkpoint(tmp_path / "a.pt", tiny_data, 4)
    with pytest.raises(InputError, match="--cfg applies to darknet weights files"):
        _test("--weights", weights, "--cfg", MICRO_CFG)


def test_the_numbers_do_not_depend_on_the_batch_size(tiny_data, tmp_path):
    """ultralytics/yolov3#271: per-class mAP changed with the batch size there. Here each image
    is letterboxed alone and padded batches are not used, so the 12 numbers are the same."""
    weights = _checkpoint(tmp_path / "a.pt", tiny_data, 4, seed=3)
    results = []
    for batch in ("1", "3", "8"):
        args = test_script.get_args_parser().parse_args(
            ["--weights", str(weights), "--device", "cpu", "--conf-thres", "0.0001",
             "--batch-size", batch, "--quiet"])
        results.append(test_script.main(args))
    assert results[0].coco == results[1].coco == results[2].coco
    assert results[0].precision == results[1].precision == results[2].precision


def test_help_shows_the_thresholds_defaults():
    text = test_script.get_args_parser().format_help()
    for flag, default in (("--conf-thres", "0.001"), ("--iou-thres", "0.6"),
                          ("--batch-size", "16")):
        entry = text[text.index(f"  {flag} "):].split("\n  --")[0]
        assert f"default: {default}" in entry, entry


def test_an_ultralytics_checkpoint_is_named_as_such(tiny_data, tmp_path, monkeypatch):
    """Such a file pickles the ultralytics package's classes; without the package torch says
    only 'No module named ultralytics'."""
    import sys
    import types
    package = types.ModuleType("ultralytics")
    tasks = types.ModuleType("ultralytics.nn.tasks")

    class DetectionModel:
        pass
    DetectionModel.__module__ = "ultralytics.nn.tasks"
    DetectionModel.__qualname__ = "DetectionModel"
    tasks.DetectionModel = DetectionModel
    for name, module in (("ultralytics", package), ("ultralytics.nn", types.ModuleType("x")),
                         ("ultralytics.nn.tasks", tasks)):
        monkeypatch.setitem(sys.modules, name, module)
    path = tmp_path / "yolov8n.pt"
    torch.save({"model": DetectionModel(), "train_args": {}}, path)
    for name in ("ultralytics", "ultralytics.nn", "ultralytics.nn.tasks"):
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(InputError, match="an ultralytics checkpoint") as err:
        _test("--weights", path, "--data", tiny_data)
    assert "this trainer reads" in str(err.value)


def _run_folder(tmp_path: Path, data: Path) -> Path:
    """RUN/weights/best.pt as train.py leaves it, with RUN/repro.yaml (seed 5, a commit)."""
    run = tmp_path / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "repro.yaml").write_text(yaml.safe_dump(
        {"options": {"seed": 5}, "environment": {"git_commit": "0123456789abcdef"}}))
    weights = _checkpoint(run / "weights" / "best.pt", data, 4)
    ckpt = torch.load(weights, weights_only=False)
    ckpt["args"]["seed"] = 5
    atomic_torch_save(ckpt, weights)
    return weights


def test_plots_go_into_the_run_folder_by_default_and_nowhere_else(tiny_data, tmp_path, capsys):
    loose = _checkpoint(tmp_path / "m.pt", tiny_data, 4)
    _test("--weights", loose)
    assert not list(tmp_path.rglob("*.png")) and "plots of" not in capsys.readouterr().out
    weights = _run_folder(tmp_path, tiny_data)
    _test("--weights", weights)
    run = weights.parent.parent
    assert f"plots of {weights} in {run}: PR_curve.png, F1_curve.png" in capsys.readouterr().out
    names = ["F1_curve.png", "PR_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.csv",
             "confusion_matrix.png", "confusion_matrix_normalized.png"]
    assert sorted(p.name for p in run.iterdir() if p.is_file() and p.name != "repro.yaml") \
        == names
    assert sorted(tmp_path.rglob("*.png")) == sorted(run.glob("*.png"))


def test_plot_options_and_the_footers_record(tiny_data, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(test_script, "write_eval_plots",
                        lambda result, folder, footer, bootstrap: calls.append(
                            (folder, footer, bootstrap)) or [])
    loose = _checkpoint(tmp_path / "m.pt", tiny_data, 4)
    _test("--weights", loose, "--plots")
    _test("--weights", loose, "--plots-dir", tmp_path / "d")
    weights = _run_folder(tmp_path, tiny_data)
    _test("--weights", weights, "--no-plots")
    _test("--weights", weights, "--bootstrap", 7, "--seed", 2)
    assert [c[0] for c in calls] == [tmp_path, tmp_path / "d", weights.parent.parent]
    fingerprint = state_fingerprint(torch.load(weights, weights_only=False)["model"])
    assert calls[0][1] == f"weights {state_fingerprint(torch.load(loose)['model'])} | m.pt"
    assert calls[2][1] == f"weights {fingerprint} | seed 5 | commit 0123456789 | best.pt"
    assert calls[2][2] == (7, 2) and calls[0][2] is None


def test_speed_per_image_is_printed_and_task_speed_times_without_scoring(tiny_data, tmp_path,
                                                                          capsys):
    weights = _checkpoint(tmp_path / "a.pt", tiny_data, 4)
    _test("--weights", weights, "--quiet")
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("speed:"))
    assert "ms pre-process" in line and "ms inference" in line and "ms NMS per image" in line
    result = _test("--weights", weights, "--task", "speed")
    out = capsys.readouterr().out
    assert "speed:" in out and "mAP" not in out and result.images == 8
    assert set(result.speed) == {"preprocess", "inference", "nms"}
    assert all(v > 0 for v in result.speed.values())
    with pytest.raises(InputError, match="--task speed times without scoring"):
        _test("--weights", weights, "--task", "speed", "--save-json")
