"""Evaluate a trained model on a dataset's validation images by COCO's rules: the 12 COCO
numbers (equal to pycocotools' COCOeval), then P, R, mAP@0.5 and mAP@0.5:0.95 per class.

    python test.py --weights runs/train/exp/weights/best.pt
    python test.py --weights runs/train/exp/weights/best.pt --save-json   # + COCO json files
    python test.py --weights yolov3.weights --cfg cfg/yolov3.cfg --data my.data
    python test.py --weights best.pt --bootstrap 1000     # + a 95% interval over the images
    python test.py --weights a/best.pt --compare b/best.pt  # B - A on the same images
    python test.py --weights yolov3.weights --cfg cfg/yolov3.cfg --data my.data --plots-dir out

--bootstrap N resamples the evaluated images with replacement N times (seeded by --seed) and
prints a bias-corrected percentile 95% interval of each COCO number beside it: the validation
set's own sampling noise. --compare evaluates a second model on the same images and gives
B - A of each number with a paired-bootstrap interval (one resample of the images for both)
and a verdict.

Plots (on by default for weights in a run folder, RUN/weights/*.pt, written into RUN/; else
--plots writes them beside the weights, --plots-dir DIR into DIR): PR_curve.png (with the
--bootstrap band), F1_curve.png, P_curve.png, R_curve.png, confusion_matrix.png,
confusion_matrix_normalized.png and confusion_matrix.csv; with --compare, A's.

train.py evaluates with the same function and loader settings, so both give the same numbers
for the same weights; a --repro run is evaluated under its own determinism settings.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.darknet_weights import is_darknet_weights
from utils.base.api import args_from_keywords
from utils.base.device import add_device_argument, select_device
from utils.base.errors import InputError, WeightsError, counted, run_script
from utils.base.host_memory import retain_freed_memory
from utils.base.repro import configure_determinism, state_fingerprint
from utils.core.bootstrap import coco_bootstrap, paired_coco_bootstrap
from utils.core.significance import verdict_sentence
from utils.data.coco_json import (
    empty_detections_message,
    ground_truth_json,
    pycocotools_stats,
    pycocotools_table,
)
from utils.data.data_config import prepare_data
from utils.data.datasets import YoloDataset, create_dataloader
from utils.engine.checkpoint import check_img_size, load_inference_model
from utils.engine.eval_plots import (
    footer_text,
    plots_folder,
    run_folder_of,
    run_record,
    write_eval_plots,
)
from utils.engine.evaluation import EvalResult, evaluate, format_table, make_val_dataset
from utils.engine.precision import PRECISIONS, autocast_factory, checkpoint_autocast

COMPARE_RESAMPLES = 1000


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a YOLOv3 model (COCO mAP).")
    parser.add_argument("--weights", required=True, help="a .pt checkpoint or darknet weights")
    parser.add_argument("--cfg", default=None, help="cfg file (default: the checkpoint's)")
    parser.add_argument("--data", default=None, help=".data file (default: the checkpoint's)")
    parser.add_argument("--img-size", type=int, default=None,
                        help="evaluation size in pixels (default: the training size)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="images per forward pass; the numbers do not depend on it "
                             "(default: 16)")
    parser.add_argument("--conf-thres", type=float, default=0.001,
                        help="score threshold: low, since COCO's AP integrates over every "
                             "score (default: 0.001)")
    parser.add_argument("--iou-thres", type=float, default=0.6,
                        help="NMS IoU threshold (default: 0.6)")
    add_device_argument(parser)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: the run's own under --repro, else all)")
    parser.add_argument("--single-cls", action="store_true",
                        help="score every box as one class, 'object' (a run trained with "
                             "--single-cls is evaluated so without it)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="forward-pass arithmetic (default: the checkpoint's training "
                             "precision; fp32 for darknet files); boxes decode in fp32 always")
    parser.add_argument("--fuse", action="store_true", help="fold batch norm into convolutions")
    parser.add_argument("--save-json", action="store_true",
                        help="write WEIGHTS.detections.json and WEIGHTS.ground_truth.json (COCO)")
    parser.add_argument("--pycocotools", action="store_true",
                        help="with --save-json: also run pycocotools' COCOeval on those files and "
                             "print its 12 numbers beside ours (needs pycocotools installed)")
    parser.add_argument("--bootstrap", type=int, default=None, metavar="N",
                        help="resample the evaluated images N times (1000 is usual) and print "
                             "a 95%% interval beside each COCO number (default: off)")
    parser.add_argument("--compare", default=None, metavar="WEIGHTS",
                        help="a second model, evaluated on the same images: B - A of each COCO "
                             "number with a paired-bootstrap 95%% interval (--bootstrap N "
                             f"resamples, default {COMPARE_RESAMPLES}) and a verdict; "
                             "A's own intervals are not printed then, and --save-json writes "
                             "A's files only")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the bootstrap's resamples (the same seed, the same "
                             "interval) (default: 0)")
    parser.add_argument("--plots", action=argparse.BooleanOptionalAction, default=None,
                        help="write the PR, F1/P/R-confidence and confusion-matrix plots "
                             "(default: on for weights in a run folder, RUN/weights/*.pt, "
                             "written into RUN/; else off, and --plots writes them beside the "
                             "weights)")
    parser.add_argument("--plots-dir", default=None, metavar="DIR",
                        help="write the plots into DIR (implies --plots)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--task", choices=("val", "speed"), default="val",
                        help="val: score the model; speed: time pre-process, inference and NMS "
                             "per image without scoring (default: val)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Options out of range are refused, never replaced by the run's values."""
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.img_size is not None and (args.img_size <= 0 or args.img_size % 32):
        raise InputError(f"--img-size {args.img_size}: must be a positive multiple of 32 (the "
                         "largest stride)")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads {args.threads}: must be at least 1")


def main(args: argparse.Namespace) -> EvalResult:
    check_args(args)
    if args.pycocotools and not args.save_json:
        raise InputError("--pycocotools compares on the files --save-json writes: add --save-json")
    if args.bootstrap is not None and args.bootstrap < 1:
        raise InputError(f"--bootstrap {args.bootstrap}: at least 1 resample (1000 is usual)")
    retain_freed_memory()  # freed activations reused, not faulted in again: docs/speed.md
    device = select_device(args.device)
    if args.task == "speed":
        return speed_only(args, device)
    a = evaluate_weights(args, args.weights, device)
    print(format_table(a.result))
    print(format_speed(a.result))
    if args.save_json:
        save_json(args, a)
    if args.bootstrap and not args.compare:
        intervals = coco_bootstrap(a.result.matches, args.bootstrap, args.seed)
        print(format_intervals(intervals, args.bootstrap, args.seed))
    if args.compare:
        print(f"\nB: {args.compare}, on the same {a.result.images} images")
        b = evaluate_weights(args, args.compare, device, first=a)
        print(format_table(b.result))
        resamples = args.bootstrap or COMPARE_RESAMPLES
        differences = paired_coco_bootstrap(a.result.matches, b.result.matches, resamples,
                                            args.seed)
        print(format_comparison(differences, resamples, args.seed))
    folder = plots_folder(args.weights, args.plots, args.plots_dir)
    if folder is not None:
        write_plots(args, a, folder)
    return a.result


def speed_only(args: argparse.Namespace, device: torch.device) -> EvalResult:
    """--task speed: the stages timed over the validation images, nothing scored."""
    for option, given in (("--save-json", args.save_json), ("--bootstrap", args.bootstrap),
                          ("--compare", args.compare), ("--plots", args.plots)):
        if given:
            raise InputError(f"{option} needs scores; --task speed times without scoring")
    result = evaluate_weights(args, args.weights, device).result
    print(format_speed(result))
    return result


def format_speed(result: EvalResult) -> str:
    speed = result.speed
    return (f"speed: {speed['preprocess']:.1f} ms pre-process, {speed['inference']:.1f} ms "
            f"inference, {speed['nms']:.1f} ms NMS per image ({result.images} images)")


def write_plots(args: argparse.Namespace, a: Evaluated, folder: Path) -> None:
    """A's evaluation plots into ``folder``, each with the weights' fingerprint, the run's seed
    and commit (from its run folder) at its foot."""
    commit = run_record(run_folder_of(args.weights)).get("commit")
    footer = footer_text(a.fingerprint, a.seed, commit, Path(args.weights).name)
    written = write_eval_plots(a.result, folder, footer,
                               bootstrap=(args.bootstrap, args.seed) if args.bootstrap else None)
    print(f"plots of {args.weights} in {folder}: {', '.join(p.name for p in written)}")


@dataclass
class Evaluated:
    """One model's evaluation and what it was evaluated on."""
    result: EvalResult
    dataset: YoloDataset
    names: list[str]
    data_path: str
    img_size: int
    detections: list | None  # COCO result records, with --save-json
    fingerprint: str = ""  # of the weights evaluated (before --fuse)
    seed: int | None = None  # the training's, when the checkpoint records it


def evaluate_weights(args: argparse.Namespace, weights: str, device: torch.device,
                     first: Evaluated | None = None) -> Evaluated:
    """One model's evaluation. ``first``: the evaluation of the model it is compared with,
    whose data and image size it takes (the same images, letterboxed alike)."""
    setup = argparse.Namespace(**{**vars(args), "weights": weights,
                                  "data": first.data_path if first else args.data})
    model, meta, data = load_model_and_data(setup)
    # The run's own determinism settings (kernels, TF32, threads) and precision, so a run's
    # numbers come out as its results.txt has them.
    run_args = meta.get("args") or {}
    repro = bool(run_args.get("repro"))
    threads = args.threads if args.threads is not None else (
        run_args.get("threads") if repro else None)
    configure_determinism(repro, threads)
    img_size = first.img_size if first else (
        args.img_size if args.img_size is not None else meta.get("img_size") or 416)
    if first and meta.get("img_size") not in (None, img_size):
        print(f"B was trained at {meta['img_size']} px; evaluated at A's {img_size} px")
    check_img_size(img_size, model)
    single_cls, names = class_setup(setup, model, meta, data)
    autocast = precision_setup(args, meta, device)
    fingerprint = state_fingerprint(model.state_dict())
    if args.fuse:
        model.fuse()
    model.to(device, memory_format=torch.channels_last)  # as in training: the same bits
    dataset = make_val_dataset(data, img_size, args.batch_size, single_cls)
    loader = create_dataloader(dataset, args.batch_size, workers=0, shuffle=False,
                               pin_memory=device.type == "cuda")
    detections = [] if args.save_json and first is None else None
    result = evaluate(model, loader, device, conf_thres=args.conf_thres,
                      iou_thres=args.iou_thres, names=names, coco_json=detections,
                      autocast=autocast, single_cls=single_cls, progress=not args.quiet,
                      score=args.task == "val")
    if first and first.names != names:
        raise InputError(f"B scores the classes {names} where A scores {first.names}: "
                         "their numbers measure different things", weights)
    if first and not np.array_equal(first.result.matches.image_ids, result.matches.image_ids):
        raise InputError("B was evaluated on other images than A (its checkpoint names other "
                         "data, or --data differs): a paired comparison needs the same images",
                         weights)
    return Evaluated(result, dataset, names, str(data.path), img_size, detections, fingerprint,
                     run_args.get("seed"))


def save_json(args: argparse.Namespace, a: Evaluated) -> None:
    """WEIGHTS.detections.json and WEIGHTS.ground_truth.json, and pycocotools on them."""
    result, detections = a.result, a.detections
    out = Path(args.weights)
    truth = ground_truth_json(a.dataset.files, a.dataset.image_sizes, a.dataset.labels, a.names)
    out.with_suffix(".detections.json").write_text(json.dumps(detections))
    out.with_suffix(".ground_truth.json").write_text(json.dumps(truth))
    print(f"COCO files: {out.with_suffix('.detections.json')} and "
          f"{out.with_suffix('.ground_truth.json')}")
    empty = empty_detections_message(detections, args.conf_thres)
    if args.pycocotools and empty:
        print(empty)
    elif args.pycocotools:
        stats = pycocotools_stats(out.with_suffix(".ground_truth.json"),
                                  out.with_suffix(".detections.json"))
        print(pycocotools_table(result.coco, stats))


def format_intervals(intervals: dict, resamples: int, seed: int) -> str:
    """Each COCO number with its image-bootstrap interval."""
    lines = [f"image bootstrap: {resamples} resamples of the images (seed {seed}), "
             "bias-corrected percentile 95% interval:"]
    for name, v in intervals.items():
        if np.isnan(v.value):  # COCO's -1
            lines.append(f"{name:>10} {-1:8.4f}   nothing to measure (no such objects)")
            continue
        lines.append(f"{name:>10} {v.value:8.4f}   {v.low:8.4f} .. {v.high:<8.4f}"
                     + _undefined(v, resamples))
    return "\n".join(lines)


def format_comparison(differences: dict, resamples: int, seed: int) -> str:
    """B - A of each COCO number, its paired-bootstrap interval, and a verdict per number."""
    lines = [f"\nB - A on the same images: paired bootstrap, {resamples} resamples (seed "
             f"{seed}), 95% interval:"]
    for name, v in differences.items():
        if np.isnan(v.value):
            lines.append(f"{name:>10} {'':>9}   nothing to measure (no such objects)")
            continue
        lines.append(f"{name:>10} {v.value:+9.4f}   {v.low:+9.4f} .. {v.high:<+9.4f}"
                     + _undefined(v, resamples))
    lines.append("verdict:")
    for name, v in differences.items():
        if np.isnan(v.low) or np.isnan(v.value):
            lines.append(f"  {name}: cannot tell: nothing to measure on these images")
            continue
        lines.append("  " + verdict_sentence(name, v.value, v.low, v.high, True, "image")[0])
    lines.append("(the images' noise only: it speaks of these two checkpoints, not of the "
                 "trainings that made them; for those, seed groups: tools.compare_groups)")
    return "\n".join(lines)


def _undefined(interval, resamples: int) -> str:
    return (f"  ({interval.undefined} of {resamples} resamples had nothing to measure: left "
            "out)" if interval.undefined else "")


def load_model_and_data(args: argparse.Namespace):
    """The model, its metadata and the .data it is evaluated on (a checkpoint names its own;
    --data overrides). A darknet file's cfg is adapted to the data's class count, as training
    adapted it, so weights converted from a 4-class run read back with the 80-class cfg the run
    started from; with --single-cls a one-class file is tried too."""
    if not is_darknet_weights(args.weights):
        model, meta = load_inference_model(args.weights, args.cfg)
        data_path = args.data or meta.get("data")
        if data_path is None:
            raise InputError("no --data given and the weights do not name one", args.weights)
        return model, meta, prepare_data(data_path)
    if args.data is None:
        raise InputError("no --data given and the weights do not name one", args.weights)
    data = prepare_data(args.data)
    counts = [data.num_classes] + ([1] if args.single_cls and data.num_classes > 1 else [])
    for count in counts:
        try:
            model, meta = load_inference_model(args.weights, args.cfg, num_classes=count)
        except WeightsError as err:
            if count == counts[-1]:
                raise WeightsError(f"{err} (read with the cfg adapted to {counted(count, 'class')})"
                                   ) from None
            continue
        for note in model.adaptations:
            print(f"cfg adapted to the data: {note}")
        return model, meta, data


def class_setup(args: argparse.Namespace, model, meta: dict, data) -> tuple[bool, list[str]]:
    """(single_cls, class names). A run trained with --single-cls is evaluated as it was,
    flag or not; --single-cls on a multi-class model scores its boxes as one class, "object"
    (as training names it). Any other class count that differs from the data's is refused."""
    trained_single = bool((meta.get("args") or {}).get("single_cls"))
    if trained_single and not args.single_cls:
        print("single-class evaluation: the checkpoint was trained with --single-cls")
    if args.single_cls or trained_single:
        return True, ["object"]
    if model.num_classes != data.num_classes:
        hint = "; add --single-cls to score it as one class" if model.num_classes == 1 else ""
        raise InputError(f"the model has {counted(model.num_classes, 'class')} but {data.path} "
                         f"has {data.num_classes}{hint}", args.weights)
    return False, meta.get("names") or data.names


def precision_setup(args: argparse.Namespace, meta: dict, device: torch.device):
    """The forward pass's autocast factory: --precision, else the training's (fp32 for darknet
    files and runs from before mixed precision). Said either way."""
    if args.precision:
        print(f"precision: {args.precision} (--precision)")
        return autocast_factory(args.precision, device)
    print(f"precision: {(meta.get('args') or {}).get('precision', 'fp32')} (the checkpoint's)")
    return checkpoint_autocast(meta, device)


def run(**options) -> EvalResult:
    """Evaluate from Python: ``test.run(weights="runs/train/exp/weights/best.pt")`` is the
    command line with the same names; returns the evaluation (``.coco`` holds the 12 COCO
    numbers by name, ``.precision``, ``.recall``, ``.f1``, ``.speed``)."""
    return main(args_from_keywords(get_args_parser(), options, "test"))


if __name__ == "__main__":
    run_script(main, get_args_parser())
