"""Convert between this trainer's checkpoints and darknet weights files, or cut a backbone.

    python -m tools.convert_weights runs/train/exp/weights/best.pt best.weights
    python -m tools.convert_weights yolov3.weights yolov3.pt --cfg cfg/yolov3.cfg
    python -m tools.convert_weights yolov3.weights darknet53.conv.74 --cfg cfg/yolov3.cfg
    python -m tools.convert_weights best.pt yolov3-tiny.conv.15 --cutoff 15

The direction follows the input's content. Darknet files are written as darknet's own
``save_weights_upto`` writes them (version 0.2.0, int64 images-seen counter, then the conv layers
before the cutoff), so darknet reads them and ``train.py --weights`` takes a cut as a backbone.
From a checkpoint the EMA weights are written (what test.py evaluates); ``--raw`` takes the raw
weights instead. Whole weights get the cfg they fit beside them (``best.weights`` ->
``best.cfg``: the run's cfg with its heads adapted to the run's class count).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from models import Darknet
from models.darknet import adapted_cfg_text
from models.darknet_weights import (
    cutoff_from_name,
    is_darknet_weights,
    load_darknet_weights,
    save_darknet_weights,
)
from utils.base.atomic_io import atomic_torch_save, atomic_write_text
from utils.base.errors import InputError, run_script
from utils.data.data_config import read_names
from utils.engine.checkpoint import load_checkpoint, model_from_checkpoint, weights_checkpoint


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
        cfg_out = cfg_beside(model, output) if cutoff is None else None
        save_darknet_weights(model, output, seen=seen, cutoff=cutoff)
        kept = cutoff if cutoff is not None else len(model.module_list)
        print(f"wrote darknet weights of layers 0..{kept - 1} to {output}")
        if cfg_out is not None:
            atomic_write_text(*cfg_out)
            print(f"wrote the cfg they fit ({model.num_classes} classes) to {cfg_out[0]}")
    else:
        names = read_names(Path(args.names)) if args.names else None
        atomic_torch_save(weights_checkpoint(model, names, str(source)), output)
        print(f"wrote a weights-only checkpoint to {output} (for --weights, test.py, detect.py)")
    return output


def cfg_beside(model: Darknet, output: Path) -> tuple[Path, str]:
    """Where the cfg of whole darknet weights goes (``best.weights`` -> ``best.cfg``) and its
    text: the model's cfg adapted to its class count, since a model trained on 4 classes from
    an 80-class cfg cannot be read back with that cfg. Refuses, before anything is written, to
    overwrite a different file of that name."""
    path = output.with_suffix(".cfg")
    text = adapted_cfg_text(model.cfg_text, model.num_classes, model.cfg_path)
    if path == output or (path.exists() and path.read_text() != text):
        raise InputError(f"the cfg these weights fit would go to {path}, which holds something "
                         "else: choose another output name", output)
    return path, text


if __name__ == "__main__":
    run_script(main, get_args_parser())
