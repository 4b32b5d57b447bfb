"""Building what a training run needs from its options: settings, model and data loaders.
train.py wires these together; each step reports what it did through ``log``."""
from __future__ import annotations

import os

import torch

from models import Darknet, model_summary
from utils.checkpoint import load_initial_weights
from utils.data_config import list_images, prepare_data
from utils.datasets import YoloDataset, create_dataloader
from utils.distributed import DistInfo, barrier
from utils.errors import InputError
from utils.evaluation import make_val_dataset
from utils.hyp import DEFAULT_HYP, load_hyp
from utils.options import apply_repro
from utils.repro import configure_determinism, seed_everything, state_fingerprint


def prepare_data_once(path: str, dist: DistInfo):
    """The .data file; the built-in set is generated once, by rank 0, while the others wait."""
    data = prepare_data(path) if dist.is_main else None
    barrier(dist)
    return data if dist.is_main else prepare_data(path)



def resolve_settings(args, data, ckpt: dict | None, log) -> tuple[dict, list[str]]:
    """The hyperparameters (the hyp file's values after --repro's changes, or the checkpoint's),
    determinism switches and seeds. Returns the hyp and what --repro pinned."""
    if args.hyp is None:
        args.hyp = str(data.hyp or DEFAULT_HYP)
    base_hyp = ckpt["hyp"] if ckpt else load_hyp(args.hyp)
    repro_notes = apply_repro(args, base_hyp) if not ckpt else []
    configure_determinism(args.repro, args.threads)
    seed_everything(args.seed)
    for note in repro_notes:
        log(f"repro: {note}")
    return base_hyp, repro_notes



def build_model(args, data, ckpt: dict | None, device: torch.device, dist: DistInfo, log
                ) -> tuple[Darknet, list[str], str]:
    """The model on ``device`` with its initial weights; returns it, the class names and the
    fingerprint of the initial weights (recorded, so a CPU and a GPU run show they started
    alike). A resumed run continues with the cfg stored in its checkpoint."""
    num_classes = 1 if args.single_cls else data.num_classes
    names = ["object"] if args.single_cls else data.names
    model = Darknet(args.cfg, num_classes=num_classes,
                    upsample="deterministic" if args.repro else "nearest",
                    cfg_text=ckpt["cfg_text"] if ckpt else None)
    for note in model.adaptations:
        log(f"cfg adapted to the data: {note}")
    log(model_summary(model, args.img_size))
    if args.weights and not ckpt:
        for line in load_initial_weights(model, args.weights):
            log(f"weights: {line}")
    initial_fingerprint = state_fingerprint(model.state_dict())
    if args.sync_bn and dist.world_size > 1:
        if device.type != "cuda":
            raise InputError("--sync-bn: torch's SyncBatchNorm runs on GPUs only; drop it for a "
                             "CPU run")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device, memory_format=torch.channels_last)
    return model, names, initial_fingerprint



def default_workers(device: str, cached: bool) -> int:
    """DataLoader workers when --workers is not given.

    On a GPU the loader must keep up with a fast step: a worker per core, up to 8. On the CPU
    the workers take cores from the step itself; with the images cached in memory an augmented
    image (mosaic included) costs about 2.4 ms, less than the contention costs (two epochs of
    yolov3-tiny at 224 px, batch 16, on 2 cores: 41 s with 0 workers, 45 s with 1, 50 s with
    2), so the main process loads them. Images read from disk (8.5 ms each) get up to 2.
    """
    if device != "cpu" and torch.cuda.is_available():
        return min(8, os.cpu_count() or 1)
    return 0 if cached else min(2, os.cpu_count() or 1)


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
    if args.workers is None:
        args.workers = default_workers(args.device, train_set.cache is not None)
        log(f"DataLoader workers: {args.workers} (--workers sets them)")
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
