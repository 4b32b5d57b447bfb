"""Building a training run from its options: the plan, determinism, model, data loaders and
optimizer, into one :class:`utils.engine.loop.Training` (:func:`build_training`, what train.py and
the benchmark both run). Each step reports what it did through ``log``."""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from models import Darknet, model_summary
from utils.base.errors import InputError
from utils.base.host_memory import retain_freed_memory
from utils.base.repro import configure_determinism, seed_everything, state_fingerprint
from utils.core.schedule import cosine_factor
from utils.data.data_config import list_images, prepare_data
from utils.data.datasets import YoloDataset, create_dataloader
from utils.engine.checkpoint import load_initial_weights, restore_training
from utils.engine.distributed import DistInfo, barrier, broadcast_object, init_distributed
from utils.engine.ema import ModelEMA
from utils.engine.evaluation import make_val_dataset
from utils.engine.loop import LoopSettings, Training, build_optimizer
from utils.engine.options import RunOptions
from utils.engine.plan import RunPlan, make_plan
from utils.engine.precision import autocast_factory, make_grad_scaler
from utils.engine.results import write_results
from utils.engine.run_record import (
    check_inputs_unchanged,
    environment,
    input_digests,
    next_run_dir,
    record_resume,
    write_run_records,
)


def prepare_data_once(path: str, dist: DistInfo):
    """The .data file; the built-in set is generated once, by rank 0, while the others wait."""
    data = prepare_data(path) if dist.is_main else None
    barrier(dist)
    return data if dist.is_main else prepare_data(path)


def start_determinism(plan: RunPlan) -> None:
    """Torch's determinism switches and thread count as planned, then every generator seeded:
    the model's initial weights are drawn next."""
    configure_determinism(plan.deterministic, plan.threads, plan.portable)
    seed_everything(plan.options.seed)


def build_model(plan: RunPlan, data, ckpt: dict | None, dist: DistInfo, log
                ) -> tuple[Darknet, list[str], str]:
    """The model on ``device`` with its initial weights; returns it, the class names and the
    fingerprint of the initial weights (recorded, so a CPU and a GPU run show they started
    alike). A resumed run continues with the cfg stored in its checkpoint."""
    options, device = plan.options, plan.device
    names = ["object"] if options.single_cls else data.names
    model = Darknet(options.cfg, num_classes=plan.num_classes, upsample=plan.upsample,
                    cfg_text=ckpt["cfg_text"] if ckpt else None)
    for note in model.adaptations:
        log(f"cfg adapted to the data: {note}")
    log(model_summary(model, options.img_size))
    if options.weights and not ckpt:
        for line in load_initial_weights(model, options.weights):
            log(f"weights: {line}")
    initial_fingerprint = state_fingerprint(model.state_dict())
    if options.sync_bn and dist.world_size > 1:
        if device.type != "cuda":
            raise InputError("--sync-bn: torch's SyncBatchNorm runs on GPUs only; drop it for a "
                             "CPU run")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device, memory_format=torch.channels_last)
    return model, names, initial_fingerprint



def build_loaders(plan: RunPlan, data, dist_info: DistInfo, log):
    """Training and validation sets and loaders; reports what was skipped."""
    options = plan.options
    train_set = YoloDataset(list_images(data.train, data.path, data.lines.get("train")),
                            plan.num_classes, options.img_size, augment=plan.augment,
                            hyp=dict(plan.base_hyp), seed=options.seed, rect=options.rect,
                            batch_size=options.batch_size, cache_images=options.cache_images,
                            single_cls=options.single_cls)
    val_set = make_val_dataset(data, options.img_size, options.batch_size, options.single_cls,
                               cache_images=options.cache_images)
    for name, ds in (("train", train_set), ("val", val_set)):
        log(f"{name}: {ds.report.summary()}")
        for message in ds.report.skipped_images + ds.report.labels.skipped:
            log(f"  skipped {message}")
        if ds.report.labels.missing == len(ds):
            message = (f"none of the {len(ds)} {name} images has a label file (for "
                       f"{ds.files[0]} it would be {ds.label_files[0]}: a labels/ folder "
                       "beside images/, one .txt per image)")
            if options.repro and name == "train":
                raise InputError(message + "; --repro refuses to train on no labels",
                                 data.path)
            log(f"WARNING: {message}")
    batch_size = options.batch_size
    if len(train_set) < batch_size and (plan.drop_last or dist_info.world_size > 1):
        raise InputError(f"--batch-size {batch_size} is larger than the {len(train_set)} "
                         "training images; under --repro or DDP partial batches are dropped")
    if batch_size % dist_info.world_size:
        raise InputError(f"--batch-size {batch_size} is the global batch: it must split "
                         f"evenly over {dist_info.world_size} processes")
    pin = plan.pin_memory
    train_loader = create_dataloader(train_set, batch_size, plan.workers, shuffle=True,
                                     drop_last=plan.drop_last, seed=options.seed,
                                     rank=dist_info.rank, world_size=dist_info.world_size,
                                     pin_memory=pin)
    val_loader = create_dataloader(val_set, batch_size, plan.workers, shuffle=False,
                                   pin_memory=pin)
    return train_set, train_loader, val_set, val_loader


def build_training(asked: RunOptions, ckpt: dict | None, run_dir: Path | None) -> Training:
    """The whole Training of a run: plan it, build model, data and optimizer, then either
    restore a checkpoint (--resume) or open a new run folder. The order of the steps that draw
    random numbers (model init after seeding) is what makes a run repeat. Past the plan, only
    ``plan.options`` is read (it names the hyp file the plan chose)."""
    # Before the first large tensor: each batch then reuses the last one's memory.
    retain_freed_memory()
    dist = init_distributed(asked.device)
    log = print if dist.is_main else _silent
    data = prepare_data_once(asked.data, dist)
    plan = make_plan(asked, ckpt, run_dir, data, dist)
    options, device = plan.options, plan.device
    start_determinism(plan)
    for note in plan.notes:
        log(f"repro: {note}" if plan.options.repro else note)
    model, names, initial_fingerprint = build_model(plan, data, ckpt, dist, log)
    train_set, train_loader, val_set, val_loader = build_loaders(plan, data, dist, log)
    optimizer = build_optimizer(model, plan.hyp, adam=plan.optimizer == "adam")
    lr_factor = functools.partial(cosine_factor, epochs=plan.epochs, lrf=plan.hyp["lrf"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lr_factor)
    ema = ModelEMA(model)
    digests = input_digests(model.cfg_text, options.hyp, train_set, val_set, data)
    log(f"precision: {plan.precision} ({plan.precision_reason})")
    if ckpt:
        for note in check_inputs_unchanged(plan, ckpt, digests):
            log(f"WARNING: {note}")
    elif dist.is_main:
        run_dir = next_run_dir(options.project, options.name)
        write_run_records(run_dir, plan, _run_record(plan, dist, digests, initial_fingerprint))
    run_dir = broadcast_object(run_dir, dist)
    log(f"Run folder {run_dir}; {len(train_set)} train / {len(val_set)} val images, "
        f"batch {options.batch_size} x accumulate {plan.accumulate}, {plan.epochs} epochs on "
        f"{device}" + (f", {dist.world_size} processes ({dist.backend})"
                       if dist.world_size > 1 else ""))
    if plan.compile:
        # In place: the module, its state-dict keys and what the EMA copied stay as they are;
        # only its calls go through the compiled code. Evaluation runs the EMA, eagerly.
        model.compile(dynamic=False if plan.compile == "static" else None)
    train_model = model if dist.world_size == 1 else DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None)
    settings = LoopSettings(
        epochs=plan.epochs, hyp=plan.hyp, accumulate=plan.accumulate,
        warmup_iterations=plan.warmup_iterations(len(train_loader)),
        seed=options.seed, multi_scale=plan.multi_scale, loss_scale=dist.world_size,
        progress=not options.quiet and dist.is_main,
        autocast=autocast_factory(plan.precision, device),
        plot_path=run_dir / "train_batch0.jpg" if dist.is_main else None, names=tuple(names))
    training = Training(plan=plan, dist=dist, log=log, model=model, train_model=train_model,
                        ema=ema, optimizer=optimizer, scheduler=scheduler,
                        scaler=make_grad_scaler(plan.precision, device), lr_factor=lr_factor,
                        settings=settings, train_loader=train_loader, val_loader=val_loader,
                        names=names, digests=digests, run_dir=run_dir)
    if ckpt:
        restore_training(training, ckpt)
        if dist.is_main:
            # Drops a line written after last.pt, if the run died between the two.
            write_results(run_dir / "results.txt", training.lines)
            record_resume(run_dir, training.start_epoch, environment(device), digests)
        log(f"Resuming {run_dir} from epoch {training.start_epoch}")
    return training


def _run_record(plan: RunPlan, dist, digests: dict, initial_fingerprint: str) -> dict:
    """repro.yaml of a new run: the options, what was decided, the environment and inputs."""
    return {"options": plan.record(), "repro": list(plan.notes) if plan.options.repro else [],
            "precision": plan.precision, "accumulate": plan.accumulate,
            "world_size": dist.world_size, "backend": dist.backend,
            "loss_gains_used": {k: plan.hyp[k] for k in ("box", "obj", "cls", "weight_decay")},
            "environment": environment(plan.device), "digests": digests,
            "initial_fingerprint": initial_fingerprint}


def _silent(*_args, **_kwargs) -> None:
    """Print for processes other than rank 0: they stay quiet."""
