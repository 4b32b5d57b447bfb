"""utils.engine.loggers: results.csv, TensorBoard and MLflow logs read back through their own
readers, equal to results.txt, continued by a resume without a duplicate, and moving no bit."""
from __future__ import annotations

import csv
import math

import pytest

import train
from tests.helpers import comparable, run_train
from utils.engine.loggers import mlflow_metric_name
from utils.engine.results import COLUMNS, read_results

pytestmark = pytest.mark.slow


def _scalars(run_dir) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        steps = [e.step for e in events.Scalars(tag)]
        assert len(steps) == len(set(steps)), f"{tag} logged an epoch twice: {steps}"
        out[tag] = {e.step: e.value for e in events.Scalars(tag)}
    return out


@pytest.fixture(scope="module")
def logged_runs(tiny_data, tmp_path_factory):
    """The same 3-epoch training three ways: straight with every log, stopped after epoch 1 and
    resumed with every log, and with no log at all."""
    root = tmp_path_factory.mktemp("logs")
    store = root / "mlruns"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.as_uri())
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        straight = run_train(tiny_data, root, "--epochs", "3", "--mlflow", "--name", "straight")
        part = run_train(tiny_data, root, "--epochs", "3", "--mlflow", "--stop-after", "1",
                         "--name", "resumed")
        resumed = train.main(train.get_args_parser().parse_args(["--resume", str(part),
                                                                 "--quiet"]))
    quiet = run_train(tiny_data, root, "--epochs", "3", "--no-tb", "--name", "quiet")
    return straight, resumed, quiet, store


def _without_memory(path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "mem_gb"}
            for row in csv.DictReader(path.open())]


def test_results_csv_holds_results_txt_numbers_across_a_resume(logged_runs):
    straight, resumed = logged_runs[:2]
    assert _without_memory(straight / "results.csv") == _without_memory(resumed / "results.csv")
    rows = list(csv.DictReader((straight / "results.csv").open()))
    txt = read_results(straight / "results.txt")
    assert [r["epoch"] for r in rows] == [str(r.epoch) for r in txt]
    for row, line in zip(rows, txt):
        assert list(row) == list(COLUMNS) and row["fingerprint"] == line.fingerprint
        for name, value in line.values.items():
            assert float(row[name]) == value or (math.isnan(value) and row[name] == "nan")
    try:  # not a dependency; read by it where it is installed
        import pandas
    except ImportError:
        return
    table = pandas.read_csv(straight / "results.csv")
    assert table["mAP@0.5"].tolist() == [r.values["mAP@0.5"] for r in txt]


def test_tensorboard_scalars_equal_results_txt_and_a_resume_repeats_no_epoch(logged_runs):
    straight, resumed = logged_runs[:2]
    for run in (straight, resumed):
        scalars = _scalars(run)
        for line in read_results(run / "results.txt"):
            assert scalars["metrics/mAP@0.5"][line.epoch] == pytest.approx(
                line.values["mAP@0.5"], rel=1e-6)  # TensorBoard stores float32
            assert scalars["train/total"][line.epoch] == pytest.approx(line.values["total"],
                                                                       rel=1e-6)
        assert sorted(scalars["train/box"]) == [0, 1, 2]
        assert "lr/group0" in scalars
    assert _scalars(straight)["train/total"] == _scalars(resumed)["train/total"]


def test_the_mlflow_run_holds_params_metrics_tags_and_artifacts(logged_runs):
    from mlflow.tracking import MlflowClient
    straight, resumed, _, store = logged_runs
    client = MlflowClient(tracking_uri=store.as_uri())
    runs = {r.info.run_name: r for r in client.search_runs(
        [e.experiment_id for e in client.search_experiments()])}
    assert set(runs) == {"straight", "resumed"}, "a resume continues its run, no second one"
    for name, folder in (("straight", straight), ("resumed", resumed)):
        run = runs[name]
        lines = read_results(folder / "results.txt")
        assert run.data.params["opt.epochs"] == "3" and "hyp.lr0" in run.data.params
        assert run.data.tags["seed"] == "0"
        assert run.data.tags["fingerprint"] == lines[-1].fingerprint
        assert run.data.tags["fingerprint.epoch0"] == lines[0].fingerprint
        history = client.get_metric_history(run.info.run_id, mlflow_metric_name("mAP@0.5"))
        assert sorted(m.step for m in history) == [0, 1, 2], "no epoch missing or repeated"
        assert {m.step: m.value for m in history} == {
            r.epoch: r.values["mAP@0.5"] for r in lines}
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"repro.yaml", "results.txt", "results.csv", "results.png"} <= artifacts
        assert run.info.status == "FINISHED"


def test_logging_moves_no_bit(logged_runs):
    straight, resumed, quiet, _ = logged_runs
    assert comparable(straight) == comparable(quiet) == comparable(resumed)
    assert not list(quiet.glob("events.out.tfevents*"))


def test_a_backend_that_fails_is_said_once_and_the_training_goes_on(tiny_data, tmp_path,
                                                                      monkeypatch, capsys):
    # Port 9 on the loopback address: nothing listens, every request is refused at once.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run = run_train(tiny_data, tmp_path, "--epochs", "2", "--mlflow")
    out = capsys.readouterr().out
    assert out.count("MLflow logging stopped") == 1
    assert len(read_results(run / "results.txt")) == 2 and (run / "weights" / "last.pt").is_file()


def test_tensorboard_missing_is_said_once(tiny_data, tmp_path, monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ModuleNotFoundError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    run = run_train(tiny_data, tmp_path, "--epochs", "2")
    assert capsys.readouterr().out.count("TensorBoard logging stopped") == 1
    assert len(read_results(run / "results.txt")) == 2
