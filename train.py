"""Train a YOLOv3-family model from a darknet cfg.

    python train.py                                  # yolov3-tiny on the built-in shapes set
    python train.py --repro --device cpu             # the same bits every run
    python train.py --resume runs/train/exp          # continue an interrupted run exactly
    python train.py --cfg cfg/yolov3.cfg --data my.data --epochs 100 --batch-size 16
    torchrun --nproc_per_node 2 train.py --device cpu --repro   # DDP; --batch-size is global

Each run writes runs/train/<name>/: results.txt, results.png, weights/last.pt, weights/best.pt,
opt.yaml, hyp.yaml, repro.yaml, train_batch0.jpg, val_predictions.jpg.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import signal
import time
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from models import Darknet, model_summary
from utils.atomic_io import atomic_torch_save, atomic_write_text
from utils.checkpoint import load_initial_weights, load_state_checked, training_checkpoint
from utils.data_config import list_images, prepare_data
from utils.datasets import YoloDataset, create_dataloader
from utils.device import select_device
from utils.distributed import (DistInfo, barrier, broadcast_object, init_distributed,
                               shutdown)
from utils.ema import ModelEMA
from utils.engine import NonFiniteLoss, build_optimizer, fitness, train_one_epoch
from utils.errors import InputError, run_script
from utils.evaluation import evaluate, make_val_dataset
from utils.hyp import DEFAULT_HYP, load_hyp, scale_hyp
from utils.options import REPRO_THREADS, apply_repro, check_args, resume_args
from utils.repro import configure_determinism, seed_everything, set_rng_state, state_fingerprint
from utils.restart import restart_with_fixed_hash_seed
from utils.results import format_line, plot_results, write_results
from utils.run_record import environment, file_digest, files_digest, next_run_dir
from utils.schedule import cosine_factor


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train YOLOv3 from a darknet cfg.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cfg", default="cfg/yolov3-tiny.cfg", help="darknet model cfg")
    p.add_argument("--data", default="data/shapes.data", help=".data file")
    p.add_argument("--hyp", default=None,
                   help="hyperparameter yaml (default: the .data file's hyp=, else "
                        f"{DEFAULT_HYP.name})")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--img-size", type=int, default=256, help="train and test size (pixels)")
    p.add_argument("--weights", default="",
                   help="initial weights: a .pt, a darknet file or a backbone cut (*.conv.N)")
    p.add_argument("--device", default="", help="cpu, 0, or empty for automatic")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers (default 2, or 0 under --repro)")
    p.add_argument("--threads", type=int, default=None,
                   help=f"CPU threads for torch (default all, or {REPRO_THREADS} under --repro)")
    p.add_argument("--project", default="runs/train", help="folder of run folders")
    p.add_argument("--name", default="exp", help="run folder name (exp, exp2, ... if taken)")
    p.add_argument("--resume", default="", help="a run folder or its weights/last.pt")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many epochs of the schedule (resume later)")
    p.add_argument("--nosave", action="store_true", help="only save the final checkpoint")
    p.add_argument("--notest", action="store_true", help="only evaluate after the last epoch")
    p.add_argument("--multi-scale", action="store_true", help="vary image size +/- 50%%")
    p.add_argument("--rect", action="store_true", help="rectangular batches")
    p.add_argument("--cache-images", action="store_true", default=None,
                   help="keep decoded images in RAM (automatic for sets under 1 GiB)")
    p.add_argument("--adam", action="store_true", help="Adam instead of the hyp file's optimizer")
    p.add_argument("--single-cls", action="store_true", help="train as one class")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: batch-norm statistics over all processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repro", action="store_true",
                   help="bit-reproducible training (see README: what it turns off)")
    p.add_argument("--augment", action="store_true",
                   help="with --repro: keep online augmentation on (still deterministic)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(args: argparse.Namespace) -> Path:
    ckpt, run_dir = None, None
    if args.resume:
        args, ckpt, run_dir = resume_args(args, get_args_parser())
    check_args(args)
    dist_info = init_distributed(args.device)
    log = print if dist_info.is_main else _silent
    device = (torch.device(f"cuda:{dist_info.local_rank}") if dist_info.backend == "nccl"
              else select_device(args.device))
    if dist_info.is_main:  # the built-in set is generated once, by one process
        data = prepare_data(args.data)
    barrier(dist_info)
    if not dist_info.is_main:
        data = prepare_data(args.data)
    if args.hyp is None:
        args.hyp = str(data.hyp or DEFAULT_HYP)
    # The hyp file's values (after --repro's changes); the gains used are scaled from them.
    base_hyp = ckpt["hyp"] if ckpt else load_hyp(args.hyp)
    repro_notes = apply_repro(args, base_hyp) if not ckpt else []
    configure_determinism(args.repro, args.threads)
    seed_everything(args.seed)
    if args.workers is None:
        args.workers = min(2, os.cpu_count() or 1)
    for note in repro_notes:
        log(f"repro: {note}")

    num_classes = 1 if args.single_cls else data.num_classes
    names = ["object"] if args.single_cls else data.names
    # A resumed run continues with the cfg it started with, stored in its checkpoint.
    model = Darknet(args.cfg, num_classes=num_classes,
                    upsample="deterministic" if args.repro else "nearest",
                    cfg_text=ckpt["cfg_text"] if ckpt else None)
    for note in model.adaptations:
        log(f"cfg adapted to the data: {note}")
    log(model_summary(model, args.img_size))
    if args.weights and not ckpt:
        for line in load_initial_weights(model, args.weights):
            log(f"weights: {line}")
    # Recorded so two runs (a CPU and a GPU one) show they started from the same weights.
    initial_fingerprint = state_fingerprint(model.state_dict())
    if args.sync_bn and dist_info.world_size > 1:
        if device.type != "cuda":
            raise InputError("--sync-bn: torch's SyncBatchNorm runs on GPUs only; drop it for a "
                             "CPU run")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device, memory_format=torch.channels_last)
    train_set, train_loader, val_set, val_loader = build_loaders(args, data, base_hyp,
                                                                 num_classes, dist_info, log)

    accumulate = max(round(base_hyp["nbs"] / args.batch_size), 1)
    hyp = scale_hyp(base_hyp, num_classes, len(model.yolo_layers), args.img_size,
                    args.batch_size * accumulate)
    optimizer = build_optimizer(model, hyp, args.adam or hyp["optimizer"] == "adam")
    lr_factor = functools.partial(cosine_factor, epochs=args.epochs, lrf=hyp["lrf"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lr_factor)
    ema = ModelEMA(model)
    start_epoch, best_fitness, lines = 0, -1.0, []
    digests = {"cfg": _text_digest(model.cfg_text), "hyp": file_digest(args.hyp),
               "train": files_digest(train_set.files + train_set.label_files),
               "val": files_digest(val_set.files + val_set.label_files)}
    if ckpt:
        for note in check_inputs_unchanged(args, ckpt, digests):
            log(f"WARNING: {note}")
        load_state_checked(model, ckpt["model"], args.resume)
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        start_epoch, best_fitness, lines = ckpt["epoch"] + 1, ckpt["best_fitness"], ckpt["results"]
        if dist_info.is_main:
            write_results(run_dir / "results.txt", lines)  # drops a line written after last.pt
            record_resume(run_dir, start_epoch, environment(device))
        log(f"Resuming {run_dir} from epoch {start_epoch}")
    elif dist_info.is_main:
        run_dir = next_run_dir(args.project, args.name)
        record = {"options": vars(args), "repro": repro_notes, "accumulate": accumulate,
                  "world_size": dist_info.world_size, "backend": dist_info.backend,
                  "loss_gains_used": {k: hyp[k] for k in ("box", "obj", "cls", "weight_decay")},
                  "environment": environment(device), "digests": digests,
                  "initial_fingerprint": initial_fingerprint}
        write_run_records(run_dir, args, base_hyp, record)
    run_dir = broadcast_object(run_dir, dist_info)
    log(f"Run folder {run_dir}; {len(train_set)} train / {len(val_set)} val images, batch "
        f"{args.batch_size} x accumulate {accumulate}, {args.epochs} epochs on {device}"
        + (f", {dist_info.world_size} processes ({dist_info.backend})"
           if dist_info.world_size > 1 else ""))
    train_model = (DistributedDataParallel(model, device_ids=[device] if device.type == "cuda"
                                           else None) if dist_info.world_size > 1 else model)

    warmup_iterations = round(hyp["warmup_epochs"] * len(train_loader))
    last_epoch = min(args.epochs, args.stop_after or args.epochs) - 1
    done_epoch = start_epoch - 1
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.time()
    try:
        for epoch in range(start_epoch, last_epoch + 1):
            train_loader.batch_sampler.set_epoch(epoch)
            stats = train_one_epoch(
                train_model, ema, optimizer, train_loader, device, epoch, args.epochs, hyp,
                accumulate, warmup_iterations, hyp["lr0"] * lr_factor(epoch), args.seed,
                args.multi_scale, run_dir / "train_batch0.jpg" if epoch == 0 and
                dist_info.is_main else None, names, not args.quiet and dist_info.is_main,
                loss_scale=dist_info.world_size)
            scheduler.step()
            if dist_info.is_main:
                final = epoch == args.epochs - 1
                result = None
                if not args.notest or final:
                    result = evaluate(ema.module, val_loader, device, hyp, names=names,
                                      plot_path=run_dir / "val_predictions.jpg",
                                      progress=not args.quiet)
                fingerprint = state_fingerprint(model.state_dict())
                lines.append(format_line(epoch, args.epochs, _row(stats, result), fingerprint))
                score = fitness(result.map50, result.map50_95) if result else -1.0
                is_best = score > best_fitness
                best_fitness = max(best_fitness, score)
                if not args.nosave or final or epoch == last_epoch:
                    state = training_checkpoint(args, epoch, model, ema, optimizer, scheduler,
                                                base_hyp, names, best_fitness, lines, digests)
                    atomic_torch_save(state, run_dir / "weights" / "last.pt")
                    if is_best:
                        atomic_torch_save(state, run_dir / "weights" / "best.pt")
                write_results(run_dir / "results.txt", lines)
                summary = (f"mAP@0.5 {result.map50:.4f} mAP@0.5:0.95 {result.map50_95:.4f}"
                           if result else "not evaluated (--notest)")
                log(f"epoch {epoch}/{args.epochs - 1}: loss {stats.losses[3]:.5f}, {summary}, "
                    f"fingerprint {fingerprint}")
            barrier(dist_info)  # the others wait while rank 0 evaluates and saves
            done_epoch = epoch
    except KeyboardInterrupt:
        log(f"\nInterrupted during epoch {done_epoch + 1}. Kept results.txt and "
            f"weights/last.pt through epoch {done_epoch}. Resume with:\n"
            f"  python train.py --resume {run_dir}")
        raise SystemExit(130)
    except NonFiniteLoss as err:
        log(f"\nStopped: {err}. weights/last.pt holds epoch {done_epoch}, the last good one.")
        raise SystemExit(1)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        shutdown(dist_info)
    if lines and dist_info.is_main:
        plot_results(run_dir / "results.txt", run_dir / "results.png")
    minutes = (time.time() - started) / 60
    log(f"Epochs {start_epoch}..{done_epoch} done in {minutes:.1f} min. Results in {run_dir}")
    return run_dir


def build_loaders(args, data, hyp: dict, num_classes: int, dist_info: DistInfo, log):
    """Training and validation sets and loaders; reports what was skipped."""
    augment = not args.repro or args.augment
    train_set = YoloDataset(list_images(data.train, data.path, data.lines.get("train")),
                            num_classes, args.img_size, augment=augment, hyp=hyp,
                            seed=args.seed, rect=args.rect, batch_size=args.batch_size,
                            cache_images=args.cache_images, single_cls=args.single_cls)
    val_set = make_val_dataset(data, args.img_size, args.batch_size, args.single_cls,
                               cache_images=args.cache_images)
    for name, ds in (("train", train_set), ("val", val_set)):
        log(f"{name}: {ds.report.summary()}")
        for message in ds.report.skipped_images + ds.report.labels.skipped:
            log(f"  skipped {message}")
        if ds.report.labels.missing == len(ds):
            message = (f"none of the {len(ds)} {name} images has a label file (for "
                       f"{ds.files[0]} it would be {ds.label_files[0]}: a labels/ folder "
                       "beside images/, one .txt per image)")
            if args.repro and name == "train":
                raise InputError(message + "; --repro refuses to train on no labels",
                                 data.path)
            log(f"WARNING: {message}")
    if len(train_set) < args.batch_size and (args.repro or dist_info.world_size > 1):
        raise InputError(f"--batch-size {args.batch_size} is larger than the {len(train_set)} "
                         "training images; under --repro or DDP partial batches are dropped")
    if args.batch_size % dist_info.world_size:
        raise InputError(f"--batch-size {args.batch_size} is the global batch: it must split "
                         f"evenly over {dist_info.world_size} processes")
    train_loader = create_dataloader(train_set, args.batch_size, args.workers, shuffle=True,
                                     drop_last=args.repro, seed=args.seed, rank=dist_info.rank,
                                     world_size=dist_info.world_size)
    val_loader = create_dataloader(val_set, args.batch_size, args.workers, shuffle=False)
    return train_set, train_loader, val_set, val_loader


def write_run_records(run_dir: Path, args, base_hyp: dict, record: dict) -> None:
    (run_dir / "weights").mkdir()
    atomic_write_text(run_dir / "opt.yaml", yaml.safe_dump(vars(args), sort_keys=False))
    atomic_write_text(run_dir / "hyp.yaml", yaml.safe_dump(base_hyp, sort_keys=False))
    atomic_write_text(run_dir / "repro.yaml", yaml.safe_dump(record, sort_keys=False))


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_inputs_unchanged(args, ckpt: dict, digests: dict) -> list[str]:
    """Compare the inputs of a resumed run with those its checkpoint recorded. Changed data
    breaks a --repro run's promise, so it is refused there; otherwise it is a loud warning.
    The cfg always comes from the checkpoint, so a changed cfg file is only reported."""
    notes = []
    if Path(args.cfg).is_file() and Path(args.cfg).read_text() != ckpt["cfg_text"]:
        notes.append(f"{args.cfg} changed since the run started; the run continues with the cfg "
                     "stored in its checkpoint")
    saved = ckpt.get("digests") or {}
    changed = [k for k in ("hyp", "train", "val") if k in saved and saved[k] != digests[k]]
    if changed:
        message = (f"the {' and '.join(changed)} files changed since the run started (digests "
                   "differ from the checkpoint's)")
        if args.repro:
            raise InputError(f"--resume of a --repro run: {message}; restore them or start a "
                             "new run", args.resume)
        notes.append(message + "; the rest of the run trains on the new files")
    return notes


def record_resume(run_dir: Path, epoch: int, env: dict) -> None:
    """Add this leg to repro.yaml, so a run resumed on another machine or software says so."""
    path = run_dir / "repro.yaml"
    record = yaml.safe_load(path.read_text()) if path.is_file() else {}
    record.setdefault("resumes", []).append({"epoch": epoch, "environment": env})
    atomic_write_text(path, yaml.safe_dump(record, sort_keys=False))


def _silent(*_args, **_kwargs) -> None:
    """Print for processes other than rank 0: they stay quiet."""


def _raise_interrupt(_signum, _frame):
    raise KeyboardInterrupt


def _row(stats, result) -> dict:
    row = {"mem_gb": stats.memory_gb, "targets": stats.targets, "img_size": stats.img_size}
    row.update(zip(("box", "obj", "cls", "total"), stats.losses))
    metrics = (result.precision, result.recall, result.map50, result.f1, *result.losses,
               result.map50_95) if result else (0.0,) * 8
    row.update(zip(("P", "R", "mAP@0.5", "F1", "val_box", "val_obj", "val_cls", "mAP@0.5:0.95"),
                   metrics))
    return row


if __name__ == "__main__":
    restart_with_fixed_hash_seed()
    run_script(main, get_args_parser())
