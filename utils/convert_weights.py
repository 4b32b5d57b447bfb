"""Convert between this trainer's checkpoints and darknet weights files, or cut a backbone.

    python -m utils.convert_weights runs/train/exp/weights/best.pt best.weights
    python -m utils.convert_weights yolov3.weights yolov3.pt --cfg cfg/yolov3.cfg
    python -m utils.convert_weights yolov3.weights darknet53.conv.74 --cfg cfg/yolov3.cfg
    python -m utils.convert_weights best.pt yolov3-tiny.conv.15 --cutoff 15

The direction follows the input's content. Darknet files are written as darknet's own
``save_weights_upto`` writes them (version 0.2.0, int64 images-seen counter, then the conv layers
before the cutoff), so darknet reads them and ``train.py --weights`` takes a cut as a backbone.
From a checkpoint the EMA weights are written (what test.py evaluates); ``--raw`` takes the raw
weights instead.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from models import Darknet
from models.darknet_weights import (
    cutoff_from_name,
    is_darknet_weights,
    load_darknet_weights,
    save_darknet_weights,
)
from utils.atomic_io import atomic_torch_save
from utils.checkpoint import load_checkpoint, model_from_checkpoint, weights_checkpoint
from utils.data_config import read_names
from utils.errors import InputError, run_script


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Convert .pt <-> darknet weights; cut a "
                                                 "backbone.")
    parser.add_argument("source", help="a checkpoint (.pt) or a darknet weights file")
    parser.add_argument("output", help="the file to write: darknet weights when the source is a "
                                       "checkpoint or --cutoff is given, else a .pt")
    parser.add_argument("--cfg", default=None, help="the cfg of a darknet source")
    parser.add_argument("--names", default=None, help="class names file, stored in a .pt")
    parser.add_argument("--cutoff", type=int, default=None,
                        help="write only layers 0..N-1 (default: from a name like *.conv.N)")
    parser.add_argument("--raw", action="store_true",
                        help="from a checkpoint: the raw weights instead of the EMA")
    return parser


def main(args: argparse.Namespace) -> Path:
    source, output = Path(args.source), Path(args.output)
    if not source.is_file():
        raise InputError("no such file", source)
    cutoff = args.cutoff if args.cutoff is not None else cutoff_from_name(output)
    from_darknet = is_darknet_weights(source)
    if from_darknet:
        if args.cfg is None:
            raise InputError("a darknet weights file needs --cfg to be read", source)
        model = Darknet(args.cfg)
        report = load_darknet_weights(model, source)
        print(report.summary(source))
        seen = report.seen
    else:
        ckpt = load_checkpoint(source)
        model = model_from_checkpoint(ckpt, source, use_ema=not args.raw)
        seen = 0
    if cutoff is not None and not 0 < cutoff <= len(model.module_list):
        raise InputError(f"--cutoff {cutoff}: the model has layers 0..{len(model.module_list) - 1}")
    if cutoff is not None or not from_darknet:
        save_darknet_weights(model, output, seen=seen, cutoff=cutoff)
        kept = cutoff if cutoff is not None else len(model.module_list)
        print(f"wrote darknet weights of layers 0..{kept - 1} to {output}")
    else:
        names = read_names(Path(args.names)) if args.names else None
        atomic_torch_save(weights_checkpoint(model, names, str(source)), output)
        print(f"wrote a weights-only checkpoint to {output} (for --weights, test.py, detect.py)")
    return output


if __name__ == "__main__":
    run_script(main, get_args_parser())
