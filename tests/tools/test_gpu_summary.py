"""The summary of a gpu_check attempt, on hand-made attempt folders: whether the CPU and GPU
runs started alike (data, initial weights, software), which recorded differences are the
device's, and the CPU-vs-GPU paragraph beside the seed range."""
import shutil

import pytest
import yaml

from tests.helpers import ROOT
from tools import gpu_summary
from tools.gpu_summary import (
    cpu_vs_gpu_lines,
    meets,
    requirement_pins,
    same_start_lines,
    setting_causes,
    software_check,
)
from utils.data.shapes import DEFAULT_DIGEST

FIXTURE_RUN = ROOT / "tests" / "data" / "run_before_plan"
PINNED = {"torch": "2.14.1+cu130", "torchvision": "0.29.1+cu130", "numpy": "2.4.6"}


def _built_in(tmp_path, digest=DEFAULT_DIGEST):
    """A .data file that generates the built-in set, its DIGEST file already there."""
    folder = tmp_path / "data"
    (folder / "shapes").mkdir(parents=True)
    (folder / "shapes" / "DIGEST").write_text(digest + "\n")
    (folder / "shapes.names").write_text("circle\nrectangle\ntriangle\nstar\n")
    (folder / "shapes.data").write_text("classes=4\ntrain=shapes/images/train\n"
                                        "valid=shapes/images/val\nnames=shapes.names\n"
                                        "generate=shapes\n")
    return str(folder / "shapes.data")


def _attempt(tmp_path, gpu_start="55ffbc9baffd23c9", cpu_start="55ffbc9baffd23c9",
             gpu_device="cpu"):
    """An attempt whose GPU and CPU runs are the fixture run's first epoch as a finished
    1-epoch run, each with its own initial fingerprint (and the GPU run's device)."""
    attempt = tmp_path / "attempt1"
    for name, start, device in (("gpu_repro_a", gpu_start, gpu_device),
                                ("cpu_repro", cpu_start, "cpu")):
        _finished_copy(attempt / "runs" / name, initial_fingerprint=start, device=device)
    (attempt / "logs").mkdir()
    return attempt


def _finished_copy(run, seed=0, device="cpu", **changes):
    """The fixture run (stopped after epoch 0 of 2) as a finished run of 1 epoch."""
    shutil.copytree(FIXTURE_RUN, run, ignore=shutil.ignore_patterns("weights"))
    lines = (run / "results.txt").read_text().splitlines()
    (run / "results.txt").write_text("\n".join(
        [lines[0]] + [line.replace(" 0/1 ", " 0/0 ") for line in lines[1:]]) + "\n")
    record = yaml.safe_load((run / "repro.yaml").read_text())
    record["options"].update(seed=seed, epochs=1)
    record["environment"]["device"] = device
    record.update(changes)
    (run / "repro.yaml").write_text(yaml.safe_dump(record))
    return run


def test_the_same_start_is_said_with_its_values(tmp_path):
    headline, section = same_start_lines(_attempt(tmp_path), PINNED, _built_in(tmp_path))
    assert headline == []
    assert section[2].startswith("**yes**")
    assert "- yes: the built-in set's digest (" in section[4]
    assert f"is the committed one, {DEFAULT_DIGEST[:16]}..." in section[4]
    assert section[5] == ("- yes: initial weights: gpu_repro_a 55ffbc9baffd23c9, cpu_repro "
                          "55ffbc9baffd23c9")
    assert section[6].startswith("- yes: software: torch 2.14.1+cu130 against ==2.14.1; "
                                 "torchvision 0.29.1+cu130 against ==0.29.1; numpy 2.4.6 "
                                 "against >=2.0")


def test_a_regenerated_data_set_is_the_headline(tmp_path):
    other = "0" * 64
    headline, section = same_start_lines(_attempt(tmp_path), PINNED, _built_in(tmp_path, other))
    assert headline[0].startswith("**HEADLINE: the built-in data here is not the committed set")
    assert f"is {other}, the committed one (utils/data/shapes.py) {DEFAULT_DIGEST}" in headline[0]
    assert section[2].startswith("**no**") and section[4].startswith("- no: ")


def test_other_initial_weights_and_another_torch_say_no(tmp_path):
    attempt = _attempt(tmp_path, gpu_start="aaaa")
    versions = dict(PINNED, torch="2.11.0+cu130", torchvision="0.26.0+cu130")
    _, section = same_start_lines(attempt, versions, _built_in(tmp_path))
    assert section[5] == "- no: initial weights: gpu_repro_a aaaa, cpu_repro 55ffbc9baffd23c9"
    assert "torch 2.11.0+cu130 against ==2.14.1 (another version)" in section[6]
    assert "torchvision 0.26.0+cu130 against ==0.29.1 (another version)" in section[6]
    assert section[6].startswith("- no: ")


def test_before_the_runs_the_start_is_not_known_yet(tmp_path):
    _, section = same_start_lines(tmp_path / "attempt1", PINNED, _built_in(tmp_path))
    assert section[2].startswith("**not known yet**")
    assert "gpu_repro_a (not recorded yet)" in section[5]


@pytest.mark.parametrize("version, spec, ok", [
    ("2.11.0+cu130", "==2.14.1", False), ("2.14.1+cu130", "==2.14.1", True),
    ("2.4.6", ">=2.0", True), ("1.26.4", ">=2.0", False), ("2.4.6", ">=2.0,<2.4", False),
    ("4.10.0", ">=4.8", True), ("2.14", "==2.14.0", True),
])
def test_versions_against_pins(version, spec, ok):
    assert meets(version, spec) is ok


def test_the_pins_are_read_from_requirements_txt():
    pins = requirement_pins((ROOT / "requirements.txt").read_text())
    assert pins["torch"].startswith("==") and pins["numpy"].startswith(">=")
    assert software_check(PINNED)[0] is (pins["torch"] == "==2.14.1")


def test_differences_are_sorted_by_cause():
    pair = {"settings_differences": [
        {"setting": s} for s in ("environment.device", "environment.machine.gpu.name",
                                 "options.device", "environment.torch_threads",
                                 "options.threads", "environment.git_commit")]}
    assert setting_causes(pair) == {
        "device": ["environment.device", "environment.machine.gpu.name", "options.device"],
        "threads": ["environment.torch_threads", "options.threads"],
        "other": ["environment.git_commit"]}


def test_the_paragraph_sets_what_was_measured_beside_what_is_expected(tmp_path):
    attempt = _attempt(tmp_path, gpu_device="cuda:0")
    (attempt / "logs" / "probe_cpu_vs_gpu.log").write_text(
        "forward: first difference at layer 0 (Conv2d+BatchNorm2d+LeakyReLU) although\n")
    text = "\n".join(cpu_vs_gpu_lines(attempt, None, dry_run=False))
    assert "different from layer 0 on" not in text  # the expectation, in its own words:
    assert "round differently from layer 0 on" in text and "one device" in text
    assert "- first differing layer (one pass of the GPU run's last checkpoint): forward: " \
           "first difference at layer 0" in text
    assert "- no differing epoch: identical to the last bit through epoch 0" in text
    assert "no seed-range reference for this training (tests/golden/seed_range.json" in text
    assert "- recorded settings that differ: the device's (environment.device) only (both " \
           "legs at the same thread count): the difference is the device's" in text


def test_the_end_is_held_against_the_seed_range_or_says_why_not(tmp_path, capsys):
    from tools import seed_range
    attempt = _attempt(tmp_path)
    group = tmp_path / "group"
    for seed in (0, 1):
        _finished_copy(group / f"seed{seed}", seed=seed)
    reference = tmp_path / "seed_range.json"
    assert seed_range.main(seed_range.get_args_parser().parse_args(
        [str(group), "--out", str(reference)])) == 0
    text = "\n".join(cpu_vs_gpu_lines(attempt, reference, dry_run=False))
    assert "mAP@0.5 differs by +0 at epoch 0, inside the seed range of " in text
    # A reference of another training is refused, and the rest is still there.
    record = yaml.safe_load((attempt / "runs" / "cpu_repro" / "repro.yaml").read_text())
    record["options"]["img_size"] = 96
    for run in ("cpu_repro", "gpu_repro_a"):
        (attempt / "runs" / run / "repro.yaml").write_text(yaml.safe_dump(record))
    text = "\n".join(cpu_vs_gpu_lines(attempt, reference, dry_run=False))
    assert "the seed-range reference was refused: --noise" in text
    assert "- no differing epoch" in text
    assert gpu_summary.EXPECTED in text


def test_a_thread_count_besides_the_device_is_named_as_another_cause(tmp_path):
    """What the CPU leg at 16 threads gave: two causes at once between CPU and GPU."""
    attempt = _attempt(tmp_path, gpu_device="cuda:0")
    path = attempt / "runs" / "cpu_repro" / "repro.yaml"
    record = yaml.safe_load(path.read_text())
    record["environment"]["torch_threads"] = 16
    path.write_text(yaml.safe_dump(record))
    text = "\n".join(cpu_vs_gpu_lines(attempt, None, dry_run=False))
    assert "the device's (environment.device); besides the device, each one more possible " \
           "cause: environment.torch_threads" in text
