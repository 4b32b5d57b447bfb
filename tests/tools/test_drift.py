import json
import math
import shutil

import pytest
import yaml

from tests.helpers import run_train
from tools.drift import get_args_parser, main
from utils.engine.results import format_line, write_results

BASE = {"mem_gb": 1.0, "box": 0.05, "obj": 0.1, "cls": 0.2, "total": 0.35, "targets": 10,
        "img_size": 64, "P": 0.5, "R": 0.6, "mAP@0.5": 0.55, "F1": 0.54, "val_box": 0.04,
        "val_obj": 0.09, "val_cls": 0.19, "mAP@0.5:0.95": 0.3}


def _run(folder, epochs=4, change_from=None, delta=1e-7, settings=None, ultralytics=False,
         stop=None):
    """``stop``: the epochs written, of a schedule of ``epochs`` (a run still training)."""
    folder.mkdir(parents=True)
    lines = []
    for e in range(epochs if stop is None else stop):
        values = dict(BASE, total=BASE["total"] - 0.01 * e, **{"mAP@0.5": 0.5 + 0.05 * e})
        fingerprint = f"{e:016x}"
        if change_from is not None and e >= change_from:
            values["mAP@0.5"] += delta
            fingerprint = f"{e + 100:016x}"
        lines.append(format_line(e, epochs, values, fingerprint))
    if ultralytics:  # 15 columns, no header, no fingerprint, '%10.3g' style
        text = "".join(" ".join(line.split()[:15]) + "\n" for line in lines)
        (folder / "results.txt").write_text(text)
    else:
        write_results(folder / "results.txt", lines)
    (folder / "repro.yaml").write_text(yaml.safe_dump(settings or {"options": {"seed": 0}}))
    return folder


def _main(capsys, *argv):
    code = main(get_args_parser().parse_args(list(argv)))
    return code, capsys.readouterr()


def test_identical_runs(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
    assert code == 0
    assert "identical to the last bit through epoch 3" in out.out
    assert "recorded settings: no difference" in out.out
    assert (tmp_path / "drift.png").stat().st_size > 0


def test_runs_differing_from_an_epoch(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", change_from=2, delta=0.02,
                                      settings={"options": {"seed": 1}})
    code, out = _main(capsys, str(a), str(b / "results.txt"), "--out", str(tmp_path))
    assert code == 1
    assert "first difference at epoch 2: mAP@0.5 0.6 vs 0.62" in out.out
    assert "options.seed: 0 vs 1" in out.out
    # The largest difference, absolute and in percent of the value.
    assert "mAP@0.5: 0.02 (3.33%) at epoch 2" in out.out


def test_tolerance(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", change_from=1, delta=1e-7)
    assert _main(capsys, str(a), str(b), "--out", str(tmp_path))[0] == 1
    # Within 1e-6 the metrics agree; fingerprints are only compared at tolerance 0.
    assert _main(capsys, str(a), str(b), "--tol", "1e-6", "--out", str(tmp_path))[0] == 0


def test_different_epoch_counts_warn(tmp_path, capsys):
    a, b = _run(tmp_path / "a", epochs=4), _run(tmp_path / "b", epochs=3)
    code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
    assert "different epoch counts" in out.out and "WARNING" in out.out


def test_reads_ultralytics_format(tmp_path, capsys):
    a = _run(tmp_path / "a", ultralytics=True)
    b = _run(tmp_path / "b", ultralytics=True, change_from=3, delta=0.1)
    code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
    assert code == 1 and "first difference at epoch 3: mAP@0.5" in out.out
    assert "n/a" in out.out  # no fingerprints in that format


def test_three_runs_spread_and_json(tmp_path, capsys):
    runs = [_run(tmp_path / n, change_from=c, delta=0.01)
            for n, c in (("a", None), ("b", 1), ("c", None))]
    code, out = _main(capsys, *map(str, runs), "--json", "--out", str(tmp_path))
    report = json.loads(out.out)
    assert code == 1 and report["agree"] is False
    assert [p["agree"] for p in report["pairs"]] == [False, True]
    spread = report["spread"][1]["mAP@0.5"]
    assert spread["max"] - spread["min"] == pytest.approx(0.01)
    assert spread["std"] > 0


def test_malformed_file_exits_2_with_file_and_line(tmp_path, capsys):
    a = _run(tmp_path / "a")
    bad = tmp_path / "bad"
    shutil.copytree(a, bad)
    lines = (bad / "results.txt").read_text().splitlines()
    lines[2] = "1/3 garbage"
    (bad / "results.txt").write_text("\n".join(lines) + "\n")
    code, out = _main(capsys, str(a), str(bad), "--out", str(tmp_path))
    assert code == 2
    assert f"{bad / 'results.txt'}:3:" in out.err and "columns" in out.err


def test_nan_against_a_number_is_a_difference(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    lines = (b / "results.txt").read_text().splitlines()
    cells = lines[3].split()
    cells[10] = "nan"  # mAP@0.5 of epoch 2
    lines[3] = " ".join(cells)
    (b / "results.txt").write_text("\n".join(lines) + "\n")
    code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
    assert code == 1 and "first difference at epoch 2: mAP@0.5 0.6 vs nan" in out.out


def test_a_run_that_stopped_early_does_not_agree(tmp_path, capsys):
    a = _run(tmp_path / "a", epochs=4)
    b = _run(tmp_path / "b", epochs=4)
    lines = (b / "results.txt").read_text().splitlines()
    (b / "results.txt").write_text("\n".join(lines[:3]) + "\n")  # header + epochs 0, 1
    code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
    assert code == 1
    assert "run b lacks epochs 2..3" in out.out and "agree through epoch 1" in out.out


def test_a_leg_resumed_elsewhere_is_reported(tmp_path, capsys):
    env = {"device": "cpu", "torch": "2.14.1"}
    a = _run(tmp_path / "a", settings={"environment": env})
    b = _run(tmp_path / "b", settings={"environment": env, "resumes": [
        {"epoch": 2, "environment": dict(env, device="cuda:0")}]})
    code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
    assert "environment.device: 'cpu' vs \"'cpu', then 'cuda:0' from epoch 2\"" in out.out
    assert "WARNING: resumed with other settings: environment.device" in out.out
    # A resume on the same machine changes nothing.
    c = _run(tmp_path / "c", settings={"environment": env, "resumes": [
        {"epoch": 2, "environment": dict(env)}]})
    code, out = _main(capsys, str(a), str(c), "--out", str(tmp_path))
    assert code == 0 and "recorded settings: no difference" in out.out


def test_a_second_leg_on_the_same_new_device_is_one_change(tmp_path, capsys):
    env = {"device": "cpu"}
    a = _run(tmp_path / "a", settings={"environment": env})
    b = _run(tmp_path / "b", settings={"environment": env, "resumes": [
        {"epoch": 1, "environment": {"device": "cuda:0"}},
        {"epoch": 2, "environment": {"device": "cuda:0"}},
        {"epoch": 3, "environment": {"device": "cpu"}}]})
    code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
    assert ("\"'cpu', then 'cuda:0' from epoch 1, then 'cpu' from epoch 3\"" in out.out)


def test_a_different_cpu_capability_is_named_before_library_versions(tmp_path, capsys):
    def machine(capability, onednn):
        return {"options": {"seed": 0}, "environment": {
            "torch": "2.14.1", "machine": {
                "cpu": {"vendor": "GenuineIntel", "flags": ["avx2", "avx512f"]},
                "kernels": {"cpu_capability": capability, "onednn_version": onednn}}}}
    a = _run(tmp_path / "a", settings=machine("AVX512", "3.12.0"))
    b = _run(tmp_path / "b", change_from=0, settings=machine("AVX2", "3.11.0"))
    code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
    assert code == 1
    text = out.out
    assert "each can part two runs, the most likely first" in text
    isa = text.index("environment.machine.kernels.cpu_capability: 'AVX512' vs 'AVX2'")
    assert isa < text.index("environment.machine.kernels.onednn_version: '3.12.0' vs '3.11.0'")


def test_a_resumed_leg_on_changed_data_is_a_setting_difference(tmp_path, capsys):
    digests = {"train": "aaa"}
    a = _run(tmp_path / "a", settings={"digests": digests, "resumes": [
        {"epoch": 2, "environment": {}, "digests": {"train": "bbb"}}]})
    b = _run(tmp_path / "b", settings={"digests": digests})
    code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
    assert "digests.train: \"'aaa', then 'bbb' from epoch 2\" vs 'aaa'" in out.out


def _noise_group(root):
    """Three seeds whose mAP@0.5 lies 0, 0.02 and 0.04 above the base at every epoch."""
    return [_run(root / f"seed{i}", change_from=0, delta=d, settings={"options": {"seed": i}})
            for i, d in enumerate([0.0, 0.02, 0.04])]


def test_noise_group_says_whether_the_last_difference_is_inside_its_seed_range(tmp_path,
                                                                                capsys):
    _noise_group(tmp_path / "group")
    a = _run(tmp_path / "a")
    near, far = (_run(tmp_path / "near", change_from=3, delta=0.03),
                 _run(tmp_path / "far", change_from=3, delta=0.1))
    code, out = _main(capsys, str(a), str(near), str(far), "--noise", str(tmp_path / "group"),
                      "--out", str(tmp_path))
    assert code == 1
    assert ("=> against seed noise: mAP@0.5 differs by +0.03 at epoch 3, inside the seed range "
            f"of {tmp_path / 'group'} (0.04 from lowest to highest of 3 seeds)") in out.out
    assert "mAP@0.5 differs by +0.1 at epoch 3, outside the seed range" in out.out
    code, out = _main(capsys, str(a), str(far), "--noise", str(tmp_path / "group"), "--json",
                      "--out", str(tmp_path))
    report = json.loads(out.out)
    assert report["pairs"][0]["noise"]["inside"] == {"mAP@0.5": False, "mAP@0.5:0.95": True}
    assert report["noise"]["per_epoch"]["3"]["mAP@0.5"]["n"] == 3
    assert (tmp_path / "drift.png").stat().st_size > 0


def test_noise_group_without_that_epoch_cannot_hold_it(tmp_path, capsys):
    # The runs' schedule, still training: at epoch 1 of 4 (a group of 2 epochs is refused).
    for i in range(2):
        _run(tmp_path / "group" / f"seed{i}", stop=2, settings={"options": {"seed": i}})
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", change_from=3, delta=0.03)
    code, out = _main(capsys, str(a), str(b), "--noise", str(tmp_path / "group"),
                      "--out", str(tmp_path))
    assert f"mAP@0.5: no seed range of {tmp_path / 'group'} to hold it against at epoch 3" \
        in out.out


def test_noise_verdict_names_an_unevaluated_last_epoch():
    from tools.drift import noise_verdict
    nan = {"abs": math.nan}
    pair = {"per_epoch": [{"epoch": 4, "metrics": {"mAP@0.5": nan, "mAP@0.5:0.95": nan}}]}
    ranges = {4: {"mAP@0.5": {"n": 3, "min": 0.1, "max": 0.2},
                  "mAP@0.5:0.95": {"n": 3, "min": 0.1, "max": 0.2}}}
    verdict = noise_verdict(pair, ranges, "g")
    assert verdict["inside"] == {"mAP@0.5": None, "mAP@0.5:0.95": None}
    assert "mAP@0.5: not evaluated at the runs' last epoch 4" in verdict["sentence"]


def _trained(seed=0, **changes):
    """The settings repro.yaml records of one training (``changes``: dotted keys replaced)."""
    settings = {"options": {"seed": seed, "epochs": 4, "cfg": "cfg/micro.cfg",
                            "data": "data/tiny.data", "hyp": "hyp.scratch.yaml", "img_size": 64,
                            "batch_size": 4, "adam": False},
                "precision": "fp32",
                "digests": {"cfg": "c0", "train": "t0", "val": "v0", "hyp": "h0"}}
    for key, value in changes.items():
        *section, name = key.split(".")
        (settings[section[0]] if section else settings)[name] = value
    return settings


def _noise_case(root, epochs=4, group_epochs=4, **group_changes):
    """Runs a and b (b 0.01 above a at its last epoch) and a three-seed group trained with
    ``group_changes``, whose seeds spread 0.04."""
    for i, d in enumerate([0.0, 0.02, 0.04]):
        _run(root / "group" / f"seed{i}", epochs=group_epochs, change_from=0, delta=d,
             settings=_trained(i, **{"options.epochs": group_epochs}, **group_changes))
    a = _run(root / "a", epochs=epochs, settings=_trained(**{"options.epochs": epochs}))
    b = _run(root / "b", epochs=epochs, change_from=epochs - 1, delta=0.01,
             settings=_trained(**{"options.epochs": epochs}))
    return [str(a), str(b), "--noise", str(root / "group"), "--out", str(root)]


def test_noise_group_of_another_schedule_is_refused(tmp_path, capsys):
    """Issue 7: runs of 2 epochs against a group trained 10: 'inside the seed range', read
    at epoch 1 of a 10-epoch schedule, was another training's noise."""
    code, out = _main(capsys, *_noise_case(tmp_path, epochs=2, group_epochs=10))
    assert code == 2 and "inside the seed range" not in out.out
    assert f"--noise {tmp_path / 'group'}: not a seed range of the compared runs' training" \
        in out.err
    assert f"epochs 10 in the group, 2 in {tmp_path / 'a'} (the schedule)" in out.err


@pytest.mark.parametrize("change, named", [
    ({"digests.train": "t1"}, "digests.train 't1' in the group, 't0' in"),
    ({"digests.cfg": "c1", "options.cfg": "cfg/other.cfg"}, "digests.cfg 'c1' in the group"),
    ({"options.img_size": 96}, "options.img_size 96 in the group, 64 in"),
    ({"options.batch_size": 8}, "options.batch_size 8 in the group, 4 in"),
    ({"digests.hyp": "h1"}, "digests.hyp 'h1' in the group, 'h0' in"),
    ({"options.adam": True}, "options.adam True in the group, False in"),
], ids=["data", "model", "img-size", "batch-size", "hyp", "optimizer"])
def test_noise_group_of_another_training_is_refused(tmp_path, capsys, change, named):
    code, out = _main(capsys, *_noise_case(tmp_path, **change))
    assert code == 2 and named in out.err, out.err


def test_noise_group_without_digests_is_compared_by_file_option(tmp_path, capsys):
    """Runs recorded before the digests: the file options decide."""
    argv = _noise_case(tmp_path, **{"options.data": "data/other.data"})
    for run in (tmp_path / "group").iterdir():
        settings = yaml.safe_load((run / "repro.yaml").read_text())
        del settings["digests"]
        (run / "repro.yaml").write_text(yaml.safe_dump(settings))
    code, out = _main(capsys, *argv)
    assert code == 2
    assert "options.data 'data/other.data' in the group, 'data/tiny.data' in" in out.err


def test_noise_group_with_lesser_differences_warns(tmp_path, capsys):
    """The same training elsewhere: a data file that moved (its digests the same) and another
    precision are named, and the verdict is still given."""
    argv = _noise_case(tmp_path, **{"options.data": "/elsewhere/tiny.data",
                                    "precision": "bf16"})
    code, out = _main(capsys, *argv)
    assert code == 1 and "inside the seed range" in out.out
    assert ("WARNING: --noise: precision 'bf16' in the group, 'fp32' in "
            f"{tmp_path / 'a'}") in out.out
    assert "WARNING: --noise: options.data '/elsewhere/tiny.data' in the group" in out.out
    code, out = _main(capsys, *argv, "--json")
    warnings = json.loads(out.out)["noise"]["warnings"]
    assert any(w.startswith("precision 'bf16' in the group") for w in warnings)


def test_noise_group_without_recorded_settings_is_checked_by_its_schedule(tmp_path, capsys):
    argv = _noise_case(tmp_path)
    for run in (tmp_path / "group").iterdir():
        (run / "repro.yaml").unlink()
    code, out = _main(capsys, *argv)
    assert code == 1 and "inside the seed range" in out.out
    assert out.out.count("WARNING: --noise: no settings recorded (repro.yaml) by") == 1
    assert "only the schedule (epochs) was checked" in out.out


def _reference(root, group, capsys):
    """tools.seed_range's file of ``group``, written under ``root``."""
    from tools import seed_range
    out = root / "seed_range.json"
    assert seed_range.main(seed_range.get_args_parser().parse_args(
        [str(group), "--out", str(out)])) == 0
    capsys.readouterr()
    return out


def test_a_seed_range_reference_gives_the_groups_verdict_without_its_folders(tmp_path, capsys):
    argv = _noise_case(tmp_path)
    reference = _reference(tmp_path, tmp_path / "group", capsys)
    code, out = _main(capsys, *argv, "--json")
    from_folders = json.loads(out.out)
    shutil.rmtree(tmp_path / "group")
    argv[argv.index("--noise") + 1] = str(reference)
    code, out = _main(capsys, *argv, "--json")
    from_file = json.loads(out.out)
    assert code == 1
    assert from_file["pairs"][0]["noise"]["inside"] == \
        from_folders["pairs"][0]["noise"]["inside"] == {"mAP@0.5": True, "mAP@0.5:0.95": True}
    assert from_file["noise"]["per_epoch"] == from_folders["noise"]["per_epoch"]
    assert from_file["noise"]["group"] == [f"{reference}:seed{i}" for i in range(3)]
    code, out = _main(capsys, *argv)
    assert f"inside the seed range of {reference} (0.04 from lowest to highest of 3 seeds)" \
        in out.out


def test_a_reference_of_another_training_is_refused_like_its_group(tmp_path, capsys):
    argv = _noise_case(tmp_path, **{"options.img_size": 96})
    argv[argv.index("--noise") + 1] = str(_reference(tmp_path, tmp_path / "group", capsys))
    code, out = _main(capsys, *argv)
    assert code == 2 and "options.img_size 96 in the group, 64 in" in out.err


def _with_pixels(run, digest):
    settings = yaml.safe_load((run / "repro.yaml").read_text())
    (run / "repro.yaml").write_text(yaml.safe_dump(dict(settings, shapes_digest=digest)))


@pytest.mark.parametrize("group_pixels, refused", [("p0", False), ("p1", True)])
def test_the_built_in_sets_pixel_digest_tells_png_bytes_from_other_data(tmp_path, capsys,
                                                                       group_pixels, refused):
    """Another OpenCV writes the same pixels into other PNG bytes: the file digests differ, the
    built-in set's pixel digest (shapes_digest) does not. Before, such a group was refused as
    another training's data."""
    argv = _noise_case(tmp_path, **{"digests.train": "t1", "digests.val": "v1"})
    for run in (tmp_path / "group").iterdir():
        _with_pixels(run, group_pixels)
    _with_pixels(tmp_path / "a", "p0")
    _with_pixels(tmp_path / "b", "p0")
    code, out = _main(capsys, *argv)
    if refused:
        assert code == 2 and "digests.train 't1' in the group, 't0' in" in out.err
        return
    assert code == 1 and "inside the seed range" in out.out
    assert ("WARNING: --noise: digests.train 't1' in the group, 't0' in "
            f"{tmp_path / 'a'} (the same built-in set by its pixel digest") in out.out


@pytest.mark.slow
def test_the_verdict_goes_to_an_mlflow_run(tiny_data, tmp_path, monkeypatch, capsys):
    """--mlflow-run ID: read back through MLflow's own client."""
    from mlflow.tracking import MlflowClient
    store = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=store)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    a = run_train(tiny_data, tmp_path, "--epochs", "1", "--repro", "--no-tb", "--name", "a")
    b = run_train(tiny_data, tmp_path, "--epochs", "1", "--repro", "--no-tb", "--name", "b")
    status = main(get_args_parser().parse_args([str(a), str(b), "--out", str(tmp_path),
                                                "--mlflow-run", run_id]))
    assert status == 0 and "logged to run" in capsys.readouterr().err
    run = client.get_run(run_id)
    assert run.data.tags["drift.verdict"] == "agree" and run.data.tags["drift.summary"]
    assert {a.path for a in client.list_artifacts(run_id, "drift")} == {
        "drift/report.json", "drift/report.txt"}


def test_noise_group_whose_repro_notes_name_their_seeds_is_one_training(tmp_path, capsys):
    """--repro's printed notes begin with the run's seed: a group of --repro seeds differs
    there by design, and was reported as another setting for every seed."""
    def notes(seed):
        return {"repro": [f"seed {seed} for python, numpy, torch", "CPU threads 2"]}
    argv = _noise_case(tmp_path, **notes(0))
    for seed, run in enumerate(sorted((tmp_path / "group").iterdir())):
        settings = yaml.safe_load((run / "repro.yaml").read_text())
        (run / "repro.yaml").write_text(yaml.safe_dump({**settings, **notes(seed + 1)}))
    code, out = _main(capsys, *argv)
    assert code in (0, 1) and "=> against seed noise" in out.out
    assert "WARNING: --noise: repro" not in out.out


def test_thread_count_is_not_a_cause_between_thread_free_portable_runs(tmp_path, capsys):
    def settings(threads, recipe):
        return {"options": {"seed": 0, "threads": threads, "portable": True,
                            "portable_recipe": recipe},
                "environment": {"torch_threads": threads}}
    for recipe, listed in ((1, True), (2, False)):
        a = _run(tmp_path / f"a{recipe}", settings=settings(1, recipe))
        b = _run(tmp_path / f"b{recipe}", settings=settings(4, recipe), change_from=1)
        code, out = _main(capsys, str(a), str(b), "--out", str(tmp_path))
        assert code == 1
        assert ("options.threads: 1 vs 4" in out.out) is listed, out.out
        assert ("environment.torch_threads: 1 vs 4" in out.out) is listed
