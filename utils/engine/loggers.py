"""Experiment logs beside results.txt: TensorBoard event files in the run folder and an MLflow run,
each carrying the run's reproducibility record (repro.yaml, the seed, every epoch's fingerprint).

Logging only reads what the epoch already computed: it draws from no random generator and never
touches the model, so a run's bits are the same with and without it (tested). A backend that is
missing or fails is said once, plainly, and switched off; the training goes on with its files
intact. Only rank 0 logs (train.py calls these from rank 0's end of epoch).

    tensorboard --logdir runs/train                      # every run's scalars, images and text
    MLFLOW_TRACKING_URI=http://host:5000 python train.py --mlflow   # else a local mlruns/ folder
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable

from utils.engine.results import COLUMNS, NOT_COMPARED

# MLflow's own file store in the working folder when no MLFLOW_TRACKING_URI is set: no server,
# nothing to install beyond mlflow-skinny. MLflow 3 keeps that store in maintenance mode and asks
# for MLFLOW_ALLOW_FILE_STORE=true to use it (its database store needs the full mlflow package).
LOCAL_MLFLOW_STORE = "mlruns"
RECORD_FILES = ("repro.yaml", "opt.yaml", "hyp.yaml")
ARTIFACT_SUFFIXES = (".txt", ".csv", ".png", ".jpg", ".yaml")
METRIC_COLUMNS = tuple(c for c in COLUMNS[1:-1] if c not in NOT_COMPARED + ("img_size",))


def mlflow_metric_name(column: str) -> str:
    """A results.txt column as MLflow accepts a metric name ('@' is not allowed there):
    mAP@0.5 -> mAP_0.5, mAP@0.5:0.95 -> mAP_0.5-0.95."""
    return re.sub(r"[^\w.\- /]", "_", column.replace(":", "-"))


class _Backend:
    """One log sink; its first failure is said once and turns it off."""
    name = "log"

    def __init__(self, say: Callable[[str], None]):
        self.say, self.alive = say, True

    def call(self, method: Callable, *args) -> None:
        if not self.alive:
            return
        try:
            method(*args)
        except Exception as err:  # any backend failure: the training must not stop for it
            self.alive = False
            self.say(f"WARNING: {self.name} logging stopped ({type(err).__name__}: {err}); the "
                     "training goes on, results.txt and the run folder are complete")


class TensorBoardLog(_Backend):
    """Event files in the run folder: `tensorboard --logdir runs/train` shows every run."""
    name = "TensorBoard"

    def __init__(self, run_dir: Path, purge_from: int | None, say: Callable[[str], None]):
        super().__init__(say)
        self.writer = None
        self.call(self._open, run_dir, purge_from)

    def _open(self, run_dir: Path, purge_from: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        # purge_step: a resumed run drops what an earlier leg logged from this epoch on (it
        # re-logs it), so no epoch appears twice.
        self.writer = SummaryWriter(str(run_dir), purge_step=purge_from)

    def record(self, run_dir: Path, epoch: int) -> None:
        self.call(self._record, run_dir, epoch)

    def _record(self, run_dir: Path, epoch: int) -> None:
        for name in RECORD_FILES:
            if (run_dir / name).is_file():
                # Markdown code block: the yaml keeps its indentation in TensorBoard's text tab.
                text = "    " + (run_dir / name).read_text().replace("\n", "\n    ")
                self.writer.add_text(f"record/{name}", text, epoch)

    def epoch(self, epoch: int, row: dict[str, float], fingerprint: str,
              lrs: list[float] | None, images: dict[str, Path]) -> None:
        self.call(self._epoch, epoch, row, fingerprint, lrs, images)

    def _epoch(self, epoch, row, fingerprint, lrs, images) -> None:
        for column in METRIC_COLUMNS:
            if not math.isnan(row[column]):
                self.writer.add_scalar(_tb_tag(column), row[column], epoch)
        for group, lr in enumerate(lrs or []):
            self.writer.add_scalar(f"lr/group{group}", lr, epoch)
        self.writer.add_text("fingerprint", fingerprint, epoch)
        for tag, path in images.items():
            if path.is_file():
                self._add_jpeg(tag, path, epoch)
        self.writer.flush()

    def _add_jpeg(self, tag: str, path: Path, epoch: int) -> None:
        """The run's JPEG as it is: TensorBoard shows encoded images, and re-encoding a
        672 px mosaic as PNG (add_image) cost 0.14 s an epoch, 4.7 s of a 17-epoch run."""
        from tensorboard.compat.proto.summary_pb2 import Summary
        data = path.read_bytes()
        height, width = jpeg_size(data)
        image = Summary.Image(height=height, width=width, colorspace=3,
                              encoded_image_string=data)
        self.writer._get_file_writer().add_summary(
            Summary(value=[Summary.Value(tag=tag, image=image)]), epoch)

    def close(self) -> None:
        if self.writer is not None:
            self.call(self.writer.close)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG's frame header, without decoding the image."""
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            raise ValueError("not a JPEG file")
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return (int.from_bytes(data[at + 5:at + 7], "big"),
                    int.from_bytes(data[at + 7:at + 9], "big"))
        at += 2 + length
    raise ValueError("no JPEG frame header")


def _tb_tag(column: str) -> str:
    if column in ("P", "R", "F1", "mAP@0.5", "mAP@0.5:0.95"):
        return f"metrics/{column}"
    return f"val/{column[4:]}" if column.startswith("val_") else f"train/{column}"


class MlflowLog(_Backend):
    """One MLflow run per training, continued by a resume (its id is in the checkpoint)."""
    name = "MLflow"

    def __init__(self, experiment: str, run_name: str, run_id: str | None,
                 say: Callable[[str], None]):
        super().__init__(say)
        self.client, self.run_id = None, run_id
        self.call(self._open, experiment, run_name)

    def _open(self, experiment: str, run_name: str) -> None:
        self.client, uri = mlflow_client()
        if self.run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else \
                self.client.create_experiment(experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        self.say(f"MLflow: run {self.run_id} in {uri}")

    def record(self, params: dict[str, Any], tags: dict[str, str]) -> None:
        self.call(self._record, params, tags)

    def _record(self, params: dict[str, Any], tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag
        logged = self.client.get_run(self.run_id).data.params
        # A resume logs only what is new: MLflow refuses to change a logged parameter.
        new = [Param(k, str(v)[:6000]) for k, v in sorted(params.items()) if k not in logged]
        for start in range(0, len(new), 100):  # MLflow's batch limit for parameters
            self.client.log_batch(self.run_id, params=new[start:start + 100])
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in sorted(tags.items())])

    def logged_epochs(self) -> set[int]:
        if not self.alive:
            return set()
        history = self.client.get_metric_history(self.run_id, mlflow_metric_name("total"))
        return {m.step for m in history}

    def epoch(self, epoch: int, row: dict[str, float], fingerprint: str,
              lrs: list[float] | None) -> None:
        self.call(self._epoch, epoch, row, fingerprint, lrs)

    def _epoch(self, epoch, row, fingerprint, lrs) -> None:
        import time

        from mlflow.entities import Metric, RunTag
        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_metric_name(c), row[c], now, epoch) for c in METRIC_COLUMNS
                   if not math.isnan(row[c])]
        metrics += [Metric(f"lr_group{g}", lr, now, epoch) for g, lr in enumerate(lrs or [])]
        tags = [RunTag("fingerprint", fingerprint), RunTag(f"fingerprint.epoch{epoch}",
                                                           fingerprint)]
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def finish(self, run_dir: Path, status: str) -> None:
        self.call(self._finish, run_dir, status)

    def _finish(self, run_dir: Path, status: str) -> None:
        for path in sorted(run_dir.iterdir()):
            if path.is_file() and path.suffix in ARTIFACT_SUFFIXES:
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)


def mlflow_client():
    """(MlflowClient, tracking URI): MLFLOW_TRACKING_URI, else the local mlruns/ folder."""
    from mlflow.tracking import MlflowClient
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = Path(LOCAL_MLFLOW_STORE).resolve().as_uri()
    return MlflowClient(tracking_uri=uri), uri


def log_verdict(run_id: str, tool: str, exit_status: int, report_json: str, text: str) -> str:
    """A comparison tool's verdict on an MLflow run (``--mlflow-run ID``): tags
    ``{tool}.verdict`` (what its exit status means) and ``{tool}.summary`` (the report's first
    lines), and the whole report as ``{tool}/report.json`` and ``report.txt``. Returns what to
    print; a store that cannot be reached is said, and the tool's own answer stands."""
    import tempfile
    meaning = {0: "agree", 1: "differ", 2: "input error"}.get(exit_status, str(exit_status))
    try:
        client, uri = mlflow_client()
        client.set_tag(run_id, f"{tool}.verdict", meaning)
        client.set_tag(run_id, f"{tool}.summary", "\n".join(text.splitlines()[:8])[:5000])
        with tempfile.TemporaryDirectory() as folder:
            for name, body in (("report.json", report_json), ("report.txt", text)):
                (Path(folder) / name).write_text(body)
                client.log_artifact(run_id, str(Path(folder) / name), artifact_path=tool)
    except Exception as err:  # the verdict is printed either way
        return f"WARNING: MLflow: the verdict was not logged ({type(err).__name__}: {err})"
    return f"MLflow: verdict '{meaning}' logged to run {run_id} in {uri}"


def flatten(mapping: dict, prefix: str) -> dict[str, Any]:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class RunLogs:
    """The run's TensorBoard and MLflow logs as its options ask (``--no-tb``, ``--mlflow``).
    ``state`` is what the checkpoint keeps of them (the MLflow run id), so a resume continues
    the same logs: the epochs an earlier leg logged are kept and none is logged twice."""

    def __init__(self, training, say: Callable[[str], None] = print):
        plan, run_dir = training.plan, training.run_dir
        options, self.state = plan.options, training.log_state
        resumed = training.start_epoch > 0
        # A resumed run re-logs its last checkpointed epoch: a kill between the checkpoint and
        # the log would otherwise leave it out.
        first = max(training.start_epoch - 1, 0)
        self.tb = TensorBoardLog(run_dir, first if resumed else None, say) if options.tb \
            else None
        self.mlflow = MlflowLog(options.project, run_dir.name, self.state.get("mlflow_run_id"),
                                say) if options.mlflow else None
        if self.mlflow and self.mlflow.alive:
            self.state["mlflow_run_id"] = self.mlflow.run_id
            self.mlflow.record({**flatten(plan.record(), "opt."),
                                **flatten(dict(plan.base_hyp), "hyp.")},
                               _tags(training))
        if self.tb:
            self.tb.record(run_dir, first)
        if resumed:
            self._backfill(training, first)

    def _backfill(self, training, first: int) -> None:
        """Epochs results.txt holds that a log lacks (learning rates are not in results.txt,
        so these epochs have none)."""
        from utils.engine.results import read_results
        rows = read_results(training.run_dir / "results.txt") if training.lines else []
        logged = self.mlflow.logged_epochs() if self.mlflow else set()
        for row in rows:
            if self.tb and row.epoch >= first:
                self.tb.epoch(row.epoch, row.values, row.fingerprint or "", None, {})
            if self.mlflow and row.epoch not in logged:
                self.mlflow.epoch(row.epoch, row.values, row.fingerprint or "", None)

    def epoch(self, run_dir: Path, epoch: int, row: dict[str, float], fingerprint: str,
              lrs: list[float]) -> None:
        if self.tb:
            images = {name: run_dir / f"{name}.jpg" for name in ("train_batch0",
                                                                 "val_predictions")}
            self.tb.epoch(epoch, row, fingerprint, lrs, images)
        if self.mlflow:
            self.mlflow.epoch(epoch, row, fingerprint, lrs)

    def finish(self, run_dir: Path, status: str = "FINISHED") -> None:
        """Close the event file; give MLflow the run folder's records and plots."""
        if self.tb:
            self.tb.close()
        if self.mlflow:
            self.mlflow.finish(run_dir, status)


def _tags(training) -> dict[str, str]:
    import yaml
    record_file = training.run_dir / "repro.yaml"
    record = yaml.safe_load(record_file.read_text()) if record_file.is_file() else {}
    tags = {"seed": str(training.plan.options.seed), "run_dir": str(training.run_dir),
            "repro": str(training.plan.options.repro)}
    for key in ("initial_fingerprint",):
        if record.get(key):
            tags[key] = str(record[key])
    commit = (record.get("environment") or {}).get("git_commit")
    if commit:
        tags["git_commit"] = str(commit)
    return tags
