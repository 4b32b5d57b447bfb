"""A cfg's anchors against a data set's training labels, as a new training checks them
(autoanchor, docs/training.md "Anchors fitted to the data"), without training:

    python -m tools.anchors data/shapes.data --cfg cfg/yolov3-tiny.cfg --img-size 224
    python -m tools.anchors my.data --cfg cfg/yolov3.cfg --img-size 416 --seed 3 --fit

Prints the best possible recall (BPR) and anchors per target (AAT) of the cfg's anchors on the
labels at that image size; below a BPR of 0.98 the anchors a training with that --seed would
fit (the same ones), their BPR and AAT, whether it would keep them, and the cfg line it would
write. ``--fit`` fits anyway, to see what a fit would give. Exit 0; bad input exit 2 with its
message (a missing file, no label boxes, fewer boxes than anchors where a fit is needed).
"""
from __future__ import annotations

import argparse

from utils.base.errors import InputError, run_script
from utils.data.data_config import prepare_data
from utils.data.hyp import DEFAULT_HYP, load_hyp
from utils.engine.autoanchor import plan_anchors
from utils.engine.options import DEFAULTS


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A cfg's anchors against a data set's training "
                                                 "labels (autoanchor, without training).")
    parser.add_argument("data", help=".data file (its train= set is measured)")
    parser.add_argument("--cfg", default=DEFAULTS["cfg"],
                        help=f"darknet model cfg (default: {DEFAULTS['cfg']})")
    parser.add_argument("--img-size", type=int, default=DEFAULTS["img_size"],
                        help=f"the training size in pixels (default: {DEFAULTS['img_size']})")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                        help=f"the training's seed, which the fit draws from (default: "
                             f"{DEFAULTS['seed']})")
    parser.add_argument("--hyp", default=None,
                        help="hyperparameter yaml, for anchor_t (default: the .data file's hyp=, "
                             f"else {DEFAULT_HYP.name})")
    parser.add_argument("--single-cls", action="store_true",
                        help="as train.py --single-cls (label rows of any class count)")
    parser.add_argument("--fit", action="store_true",
                        help="fit anchors even when the cfg's reach a BPR of 0.98")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.img_size <= 0 or args.img_size % 32:
        raise InputError(f"--img-size {args.img_size}: must be a positive multiple of 32 (the "
                         "largest stride), as train.py's")
    data = prepare_data(args.data)
    hyp = load_hyp(args.hyp or data.hyp or DEFAULT_HYP)
    num_classes = 1 if args.single_cls else data.num_classes
    check = plan_anchors(args.cfg, data, args.img_size, num_classes, args.single_cls,
                         hyp["anchor_t"], args.seed, fit=args.fit)
    for line in check.lines():
        print(line)
    if check.fitted:
        print("the fitted anchors as a cfg line: anchors="
              + ",  ".join(f"{w:g},{h:g}" for w, h in check.anchors_after))
    return 0


if __name__ == "__main__":
    run_script(main, get_args_parser())
