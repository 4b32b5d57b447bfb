"""Train a YOLOv3-family model from a darknet cfg.

    python train.py                                  # yolov3-tiny on the built-in shapes set
    python train.py --repro --device cpu             # the same bits every run
    python train.py --resume runs/train/exp          # continue an interrupted run exactly
    python train.py --cfg cfg/yolov3.cfg --data my.data --epochs 100 --batch-size 16
    python train.py --weights yolov3-tiny.conv.15 --freeze 15 --patience 10 --save-period 5
    torchrun --nproc_per_node 2 train.py --device cpu --repro   # DDP; --batch-size is global

Each run writes runs/train/<name>/: results.txt, results.png, weights/last.pt, weights/best.pt,
opt.yaml, hyp.yaml, repro.yaml, train_batch0.jpg, val_predictions.jpg, labels.jpg, and the last
epoch's evaluation plots (PR_curve.png, F1/P/R_curve.png, confusion_matrix*.png and .csv);
with --save-period N also weights/epoch{K}.pt every N epochs.
"""
from __future__ import annotations

import argparse
import functools
import signal
import sys
import time
from pathlib import Path

from utils.base.api import args_from_keywords
from utils.base.atomic_io import atomic_same_file, atomic_torch_save, signals_deferred
from utils.base.errors import counted, run_script
from utils.base.repro import state_fingerprint
from utils.engine.checkpoint import training_checkpoint
from utils.engine.distributed import barrier, broadcast_object, shutdown
from utils.engine.eval_plots import plots_after_training, write_labels_plot
from utils.engine.evaluation import EvalResult, evaluate
from utils.engine.loggers import RunLogs
from utils.engine.loop import EpochStats, NonFiniteLoss, Training, fitness, train_one_epoch
from utils.engine.options import options_parser, resolve_options
from utils.engine.restart import restart_if_needed
from utils.engine.results import format_line, plot_results, write_results
from utils.engine.run_record import record_stop
from utils.engine.training_setup import build_training


def get_args_parser() -> argparse.ArgumentParser:
    return options_parser()


def main(args: argparse.Namespace, restart: bool = False) -> Path:
    """Train as ``args`` ask. ``restart``: first re-execute the interpreter when the run needs
    variables set at its start (PYTHONHASHSEED for --repro); train.py's command line does, a
    test calling main() in-process does not."""
    options, ckpt, run_dir = resolve_options(args, get_args_parser())
    if restart:
        restart_if_needed(options)
    training = build_training(options, ckpt, run_dir)
    plan, log = training.plan, training.log
    logs = RunLogs(training, log) if training.dist.is_main else None
    if ckpt is None and training.dist.is_main:
        write_labels_plot(training)  # a new run's training labels: labels.jpg
    done_epoch, last_result = training.start_epoch - 1, None
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.time()
    status = "FAILED"
    try:
        for epoch in range(training.start_epoch, plan.last_epoch + 1):
            last_result = train_epoch(training, epoch, logs)
            done_epoch = epoch
            if out_of_patience(training):
                break  # said and recorded by end_of_epoch
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        log(f"\nInterrupted during epoch {done_epoch + 1}. Kept results.txt and "
            f"weights/last.pt through epoch {done_epoch}. Resume with:\n"
            f"  python train.py --resume {training.run_dir}")
        raise SystemExit(130) from None
    except NonFiniteLoss as err:
        log(f"\nStopped: {err}. weights/last.pt holds epoch {done_epoch}, the last good one.")
        raise SystemExit(1) from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        shutdown(training.dist)
        if training.lines and training.dist.is_main:
            plot_results(training.run_dir / "results.txt", training.run_dir / "results.png")
        if logs:
            logs.finish(training.run_dir, status)
    if training.dist.is_main:
        log(plots_after_training(training, last_result, done_epoch))
    minutes = (time.time() - started) / 60
    log(f"Epochs {training.start_epoch}..{done_epoch} done in {minutes:.1f} min. Results in "
        f"{training.run_dir}")
    return training.run_dir


def train_epoch(training: Training, epoch: int, logs: RunLogs | None = None
                ) -> EvalResult | None:
    """One epoch of training, then (rank 0) its evaluation, fingerprint, results and
    checkpoints; the other processes wait at the barrier. Returns the evaluation (rank 0, an
    evaluated epoch), else None."""
    training.train_loader.batch_sampler.set_epoch(epoch)
    stats = train_one_epoch(training.train_model, training.ema, training.optimizer,
                            training.train_loader, training.plan.device, epoch,
                            training.settings.hyp["lr0"] * training.lr_factor(epoch),
                            training.settings, training.scaler)
    lrs = [group["lr"] for group in training.optimizer.param_groups]  # the epoch's last step's
    training.scheduler.step()
    result = end_of_epoch(training, epoch, stats, logs, lrs) if training.dist.is_main else None
    barrier(training.dist)
    if training.plan.options.patience:  # rank 0 counted; every process stops together
        training.stale_epochs = broadcast_object(training.stale_epochs, training.dist)
    return result


def out_of_patience(training: Training) -> bool:
    """--patience N: N evaluated epochs in a row without a fitness above the best so far."""
    patience = training.plan.options.patience
    return bool(patience) and training.stale_epochs >= patience


def end_of_epoch(training: Training, epoch: int, stats: EpochStats, logs: RunLogs | None = None,
                 lrs: list[float] | None = None) -> EvalResult | None:
    """Evaluate the EMA, fingerprint the raw weights, append to results.txt, save checkpoints,
    then log the epoch (after the checkpoint, so a resume never finds an epoch logged that the
    checkpoint does not hold). Returns the evaluation (None: not evaluated)."""
    plan, run_dir = training.plan, training.run_dir
    options = plan.options
    final = epoch == plan.epochs - 1
    result = None
    eval_started = time.perf_counter()
    if not options.notest or final:
        result = evaluate(training.ema.module, training.val_loader, plan.device,
                          training.settings.hyp, names=training.names,
                          plot_path=run_dir / "val_predictions.jpg", progress=not options.quiet,
                          autocast=training.settings.autocast,
                          memory_format=plan.memory_format,
                          fixed_order_loss=plan.fixed_order_loss)
    eval_seconds = time.perf_counter() - eval_started
    fingerprint = state_fingerprint(training.model.state_dict())
    row = _row(stats, result)
    training.lines.append(format_line(epoch, plan.epochs, row, fingerprint))
    score = fitness(result.map50, result.map50_95) if result else -1.0
    is_best = score > training.best_fitness
    if result:  # --patience counts evaluated epochs only: --notest's others say nothing
        training.stale_epochs = 0 if is_best else training.stale_epochs + 1
    training.best_fitness = max(training.best_fitness, score)
    stopping = out_of_patience(training)
    # A signal during the checkpoint's write would reach torch's writer as an error mid-file:
    # hold it until the checkpoint and results.txt are written, then stop as for any interrupt.
    with signals_deferred():
        save_checkpoints(training, epoch, is_best,
                         last=not options.nosave or final or epoch == plan.last_epoch or stopping,
                         evaluation=result)
        write_results(run_dir / "results.txt", training.lines)
        if stopping:
            record_stop(run_dir, epoch, _stop_reason(training))
    if logs:
        logs.epoch(run_dir, epoch, row, fingerprint, lrs or [])
    summary = (f"mAP@0.5 {result.map50:.4f} mAP@0.5:0.95 {result.map50_95:.4f}"
               if result else "not evaluated (--notest)")
    # Times go to the log only: results.txt holds what two identical runs share.
    timing = f"train {stats.seconds:.1f} s ({stats.images / max(stats.seconds, 1e-9):.1f} img/s)"
    if result:
        timing += f", eval {eval_seconds:.1f} s"
    training.log(f"epoch {epoch}/{plan.epochs - 1}: loss {stats.losses['total']:.5f}, "
                 f"{summary}, fingerprint {fingerprint}; {timing}")
    if stopping:
        training.log(f"Stopped early after epoch {epoch}: {_stop_reason(training)} "
                     "(recorded as stopped_early in repro.yaml)")
    return result


def save_checkpoints(training: Training, epoch: int, is_best: bool, last: bool,
                     evaluation: EvalResult | None = None) -> None:
    """weights/last.pt (when ``last``) and best.pt (its hard link, when ``is_best``), and
    every --save-period epochs weights/epoch{K}.pt: the same whole checkpoint, linked to
    last.pt's bytes where last.pt was written, else written itself (--nosave). ``evaluation``
    (the epoch's, None: not evaluated) gives the checkpoint its best-F1 threshold."""
    weights = training.run_dir / "weights"
    period = training.plan.options.save_period
    keep = period is not None and (epoch + 1) % period == 0
    if last:
        atomic_torch_save(training_checkpoint(training, epoch, evaluation), weights / "last.pt")
        if is_best:
            atomic_same_file(weights / "last.pt", weights / "best.pt")
        if keep:
            atomic_same_file(weights / "last.pt", weights / f"epoch{epoch}.pt")
    elif keep:
        atomic_torch_save(training_checkpoint(training, epoch, evaluation),
                          weights / f"epoch{epoch}.pt")


def _stop_reason(training: Training) -> str:
    """What repro.yaml's stopped_early and the log say about a --patience stop."""
    patience = training.plan.options.patience
    return (f"--patience {patience}: the fitness (0.1 mAP@0.5 + 0.9 mAP@0.5:0.95) did not "
            f"improve in {counted(patience, 'evaluated epoch')}; best "
            f"{float(training.best_fitness)!r} (weights/best.pt)")


def _raise_interrupt(_signum, _frame):
    raise KeyboardInterrupt


def _row(stats: EpochStats, result) -> dict:
    """One results.txt row; the metric columns of an epoch that was not evaluated are NaN
    (not 0, which would read as a measured score)."""
    row = {"mem_gb": stats.memory_gb, "targets": stats.targets, "img_size": stats.img_size}
    row.update(stats.losses)
    metrics = (result.precision, result.recall, result.map50, result.f1, *result.losses,
               result.map50_95) if result else (float("nan"),) * 8
    row.update(zip(("P", "R", "mAP@0.5", "F1", "val_box", "val_obj", "val_cls", "mAP@0.5:0.95"),
                   metrics))
    return row


def run(**options) -> Path:
    """Train from Python: ``train.run(epochs=3, batch_size=4, repro=True)`` is
    ``python train.py --epochs 3 --batch-size 4 --repro``, checked by the same parser; returns
    the run folder. Runs in this process (no restart: --portable's kernel variables must be
    set before Python starts, so use the command line for --portable)."""
    return main(args_from_keywords(get_args_parser(), options, "train"))


if __name__ == "__main__":
    if any(a.split("=")[0] == "--evolve" for a in sys.argv[1:]):  # many trainings: a tool
        get_args_parser().error("--evolve is a tool: python -m tools.evolve --generations G "
                                "--evolve-seeds K --out runs/evolve/NAME -- <train.py options>")
    run_script(functools.partial(main, restart=True), get_args_parser())
