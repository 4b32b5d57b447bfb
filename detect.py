"""Draw a model's detections on images, videos, a webcam or a stream.

    python detect.py --weights runs/train/exp/weights/best.pt --source data/shapes/images/val
    python detect.py --weights yolov3.weights --cfg cfg/yolov3.cfg --source "photos/*.jpg"
    python detect.py --weights best.pt --source 0                        # webcam 0
    python detect.py --weights best.pt --source rtsp://host/stream       # rtsp, rtmp, http(s)
    python detect.py --weights best.pt --source sources.txt --save-crop --save-csv
    python detect.py --weights best.onnx --source data/shapes/images/val   # via onnxruntime

Annotated files go to runs/detect/<name>/ (exp, exp2, ...), one per image or frame (``a.png``
and ``a.jpg`` become ``a_png.jpg`` and ``a_jpg.jpg``); --save-txt adds YOLO label files in
labels/ (5 columns, the format training reads; --save-conf adds the score as a 6th),
--save-crop each box in crops/<class>/, --save-csv predictions.csv. An unreadable image is
skipped with its reason; a stream that cannot be opened or stops keeps what it sent; either
way the run ends with exit status 2 after the others are done.

Defaults that fit the model, each said in one line: the score threshold is the run's best-F1
threshold (where its last evaluation read results.txt's P, R and F1), kept by the checkpoint
and its .onnx export, else 0.3; on the CPU a checkpoint runs in fp32, as its .onnx export does,
so the two give the same boxes (--precision bf16 computes as a bf16 training evaluated).
"""
from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path
from typing import Callable

import cv2
import torch

from models.darknet_weights import is_darknet_weights
from models.onnx_model import is_onnx_file, load_onnx_model
from utils.base.api import args_from_keywords
from utils.base.device import add_device_argument, select_device
from utils.base.errors import ImageError, InputError, counted, run_script
from utils.core.boxes import letterbox_to_original, xyxy_to_xywh
from utils.core.nms import highest_score, non_max_suppression
from utils.data.augment import letterbox, resize_longest_side
from utils.data.data_config import read_names
from utils.data.inputs import to_model_input
from utils.data.plots import draw_box
from utils.data.sources import frames, list_sources, output_stems
from utils.engine.checkpoint import check_img_size, load_inference_model
from utils.engine.precision import (
    PRECISIONS,
    autocast_factory,
    forward_context,
    inference_precision,
)
from utils.engine.run_record import next_run_dir

# uint8 [1, 3, S, S] RGB letterboxed image -> decoded predictions [1, N, 5 + C] float32
Predictor = Callable[[torch.Tensor], torch.Tensor]
# The score threshold for weights that keep no best-F1 threshold of their own.
DEFAULT_CONF = 0.3


def torch_predictor(model, device: torch.device, autocast=None) -> Predictor:
    """The model's decoded predictions, computed in ``autocast``'s precision (None: fp32)."""
    @torch.no_grad()
    def predict(tensor: torch.Tensor) -> torch.Tensor:
        with forward_context(autocast):
            detections, _ = model(to_model_input(tensor, device))
        return detections.float()
    return predict


def detect_frame(predict: Predictor, frame, img_size: int, conf_thres: float,
                 iou_thres: float, classes: list[int] | None, agnostic: bool = False,
                 max_det: int = 300) -> tuple[torch.Tensor, float]:
    """Detections [n, 6] (x1, y1, x2, y2 in the frame's pixels, score, class), and the highest
    score of any box before the threshold (what to say when nothing passes it). The frame is
    resized and letterboxed exactly as test.py and training see an image."""
    resized = resize_longest_side(frame, img_size)
    img, _, pad = letterbox(resized, (img_size, img_size), scaleup=False)
    tensor = torch.from_numpy(img[:, :, ::-1].transpose(2, 0, 1).copy())[None]
    prediction = predict(tensor)
    det = non_max_suppression(prediction, conf_thres, iou_thres, classes,
                              multi_label=False, agnostic=agnostic, max_det=max_det)[0].cpu()
    det[:, :4] = letterbox_to_original(det[:, :4], resized.shape[1] / frame.shape[1], pad,
                                       frame.shape[:2])
    return det, highest_score(prediction[0])


def label_text(det: torch.Tensor, shape: tuple[int, int], with_scores: bool) -> str:
    """YOLO label rows (class x y w h, normalized), the score as a 6th column only when asked:
    5 columns are what the label reader takes back for training."""
    h, w = shape
    xywhn = xyxy_to_xywh(det[:, :4]) / torch.tensor([w, h, w, h])
    lines = []
    for (x, y, bw, bh), score, cls in zip(xywhn.tolist(), det[:, 4].tolist(),
                                          det[:, 5].tolist()):
        line = f"{int(cls)} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}"
        lines.append(line + (f" {score:.5f}\n" if with_scores else "\n"))
    return "".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects with a YOLOv3 model.")
    parser.add_argument("--weights", required=True,
                        help="a .pt checkpoint, darknet .weights, or an .onnx file from "
                             "python -m tools.export (run by onnxruntime)")
    parser.add_argument("--cfg", default=None, help="cfg for .weights files")
    parser.add_argument("--names", default=None,
                        help="class names file, one a line; replaces the names the weights "
                             "carry (checked against the class count)")
    parser.add_argument("--source", default="data/shapes/images/val",
                        help="image, video, folder or glob")
    parser.add_argument("--img-size", type=int, default=None,
                        help="inference size in pixels (default: the training size)")
    parser.add_argument("--conf-thres", type=float, default=None,
                        help="score threshold (default: the run's best-F1 threshold, where the "
                             f"checkpoint or .onnx file keeps it, else {DEFAULT_CONF})")
    parser.add_argument("--iou-thres", type=float, default=0.6,
                        help="NMS IoU threshold (default: 0.6)")
    parser.add_argument("--classes", type=int, nargs="+", default=None, help="keep these only")
    parser.add_argument("--agnostic-nms", action="store_true",
                        help="one NMS over all classes: overlapping boxes of different classes "
                             "suppress each other")
    parser.add_argument("--max-det", type=int, default=300,
                        help="at most this many detections a frame (default: 300)")
    add_device_argument(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="arithmetic of the forward pass (default: fp32 on the CPU, as an "
                             ".onnx export computes; the checkpoint's on a GPU)")
    parser.add_argument("--fuse", action="store_true", help="fold batch norm into convolutions")
    parser.add_argument("--save-txt", action="store_true",
                        help="also write YOLO label files (class x y w h, normalized)")
    parser.add_argument("--save-conf", action="store_true",
                        help="with --save-txt: add the score as a 6th column (such files are "
                             "results, not training labels)")
    parser.add_argument("--save-crop", action="store_true",
                        help="also write each detected box as an image, in crops/<class>/")
    parser.add_argument("--save-csv", action="store_true",
                        help="also write predictions.csv: one row per detection")
    parser.add_argument("--line-thickness", type=int, default=1,
                        help="box line thickness in pixels (default: 1)")
    parser.add_argument("--hide-labels", action="store_true", help="draw boxes without names")
    parser.add_argument("--hide-conf", action="store_true", help="draw names without scores")
    parser.add_argument("--project", default="runs/detect",
                        help="folder of result folders (default: runs/detect)")
    parser.add_argument("--name", default="exp",
                        help="result folder name, exp2, exp3, ... if taken (default: exp)")
    return parser


def class_names(args: argparse.Namespace, carried: list[str] | None, num_classes: int
                ) -> list[str]:
    """--names when given (said when it replaces the weights' own), else the weights' names,
    else the class numbers; refused when the count is not the model's."""
    if args.names:
        names = read_names(Path(args.names))
        if len(names) != num_classes:
            raise InputError(f"--names lists {counted(len(names), 'name')} but the model has "
                             f"{counted(num_classes, 'class')}", args.names)
        if carried and carried != names:
            print(f"class names from {args.names}, not the weights' own ({', '.join(carried)})")
        return names
    return carried or [str(i) for i in range(num_classes)]


def load_predictor(args: argparse.Namespace) -> tuple[Predictor, dict, int]:
    """(predictor, metadata, class count) for a checkpoint, darknet or ONNX file."""
    if is_onnx_file(args.weights):
        for given, option in ((args.cfg, "--cfg"), (args.fuse, "--fuse"),
                              (args.precision, "--precision"),
                              (args.device not in ("", "cpu") and args.device, "--device")):
            if given:
                raise InputError(f"{option} does not apply to an ONNX file (onnxruntime runs "
                                 "it on the CPU, in the precision it was exported in)",
                                 args.weights)
        predict, meta = load_onnx_model(args.weights)
        print("precision fp32 (an .onnx file runs in fp32, in onnxruntime)")
        return predict, meta, meta["num_classes"]
    device = select_device(args.device)
    model, meta = load_inference_model(args.weights, args.cfg)
    if args.fuse:
        model.fuse()
    model.to(device, memory_format=torch.channels_last).eval()
    precision = say_precision(args, meta, device)
    check_img_size(inference_size(args, meta), model)
    return torch_predictor(model, device, autocast_factory(precision, device)), meta, \
        model.num_classes


def say_precision(args: argparse.Namespace, meta: dict, device: torch.device) -> str:
    """The forward pass's precision (:func:`inference_precision`), said in one line, with a
    note where a reduced precision's boxes differ from the .onnx export's."""
    precision, reason = inference_precision(
        args.precision, (meta.get("args") or {}).get("precision", "fp32"), device)
    print(f"precision {precision} ({reason})")
    if precision != "fp32":
        # The .pt and its ONNX export must not differ without a word.
        print(f"  ({precision} rounds each layer's output: an .onnx export of these weights "
              "runs in fp32, so its boxes and scores differ in the last digits; --precision "
              "fp32 computes as the export does)")
    return precision


def confidence_threshold(args: argparse.Namespace, meta: dict) -> float:
    """--conf-thres as given, else the run's best-F1 score threshold where the weights keep
    it (a training checkpoint of an evaluated epoch, or its .onnx export), else
    :data:`DEFAULT_CONF`; said in one line."""
    if args.conf_thres is not None:
        print(f"conf-thres {args.conf_thres:g} (--conf-thres)")
        return args.conf_thres
    if meta.get("f1_conf") is not None:
        source = f"epoch {meta['epoch']}'s" if meta.get("epoch") is not None else "the run's"
        print(f"conf-thres {meta['f1_conf']:.3f} (the best-F1 score threshold of {source} "
              "evaluation, where results.txt's P, R and F1 are read; --conf-thres to choose)")
        return meta["f1_conf"]
    if is_onnx_file(args.weights):
        why = "this .onnx file keeps no best-F1 threshold: its weights had none, or an " \
              "older tools.export wrote it"
    elif is_darknet_weights(args.weights):
        why = "darknet weights keep no best-F1 threshold"
    else:
        why = "this checkpoint keeps no best-F1 threshold: an older one, weights only, or " \
              "an epoch not evaluated"
    print(f"conf-thres {DEFAULT_CONF} (the default: {why})")
    return DEFAULT_CONF


def inference_size(args: argparse.Namespace, meta: dict) -> int:
    """--img-size as given (0 is refused, not replaced), else the training size."""
    return args.img_size if args.img_size is not None else meta.get("img_size") or 416


def check_args(args: argparse.Namespace) -> None:
    if args.save_conf and not args.save_txt:
        raise InputError("--save-conf adds a column to the files --save-txt writes: add "
                         "--save-txt")
    if args.max_det < 1:
        raise InputError(f"--max-det {args.max_det}: must be at least 1")
    if args.line_thickness < 1:
        raise InputError(f"--line-thickness {args.line_thickness}: must be at least 1")


def main(args: argparse.Namespace, detections: dict | None = None) -> Path:
    """Detect on every source into a new result folder; returns it. ``detections``, when a
    dict, receives each frame's detections [n, 6] (x1, y1, x2, y2, score, class) by name."""
    check_args(args)
    predict, meta, num_classes = load_predictor(args)
    conf_thres = confidence_threshold(args, meta)
    names = class_names(args, meta.get("names"), num_classes)
    img_size = inference_size(args, meta)
    if img_size <= 0 or img_size % 32:
        raise InputError(f"--img-size {img_size}: must be a positive multiple of 32 (the "
                         "largest stride)")
    if is_onnx_file(args.weights) and img_size != meta["img_size"]:
        raise InputError(f"--img-size {img_size}: this ONNX file takes {meta['img_size']} px "
                         "only (export again with --img-size)", args.weights)
    sources = list_sources(args.source)
    out = DetectionWriter(next_run_dir(args.project, args.name), names, args, conf_thres)
    failed = []
    try:
        for source, stem in output_stems(sources).items():
            try:
                for name, frame in frames(source, stem):
                    det, best = detect_frame(predict, frame, img_size, conf_thres,
                                             args.iou_thres, args.classes, args.agnostic_nms,
                                             args.max_det)
                    out.write(name, frame, det, best)
                    if detections is not None:
                        detections[name] = det
            except ImageError as err:
                failed.append(str(err))
                print(f"{'stopped' if source.is_live else 'skipped'} {err}")
    except KeyboardInterrupt:
        print("stopped by the user")
    finally:
        out.close()
    if args.save_txt:
        print("labels: class x y w h (normalized)" + (", then the score" if args.save_conf
                                                       else ""))
    print(f"Results saved to {out.folder}")
    if failed:
        raise ImageError(f"{len(failed)} of {len(sources)} sources could not be read to the end "
                         f"(results for what was read are in {out.folder}): " + "; ".join(failed))
    return out.folder


class DetectionWriter:
    """The result folder: annotated frames, and as asked labels/ (as the ultralytics tools
    write them), crops/<class>/ and predictions.csv; one line of counts a frame."""

    def __init__(self, folder: Path, names: list[str], args: argparse.Namespace,
                 conf_thres: float):
        self.folder, self.names, self.args, self.conf_thres = folder, names, args, conf_thres
        self.csv_file = (folder / "predictions.csv").open("w", newline="") \
            if args.save_csv else None
        self.csv = csv.writer(self.csv_file) if self.csv_file else None
        if self.csv:
            self.csv.writerow(["frame", "class", "name", "score", "x1", "y1", "x2", "y2"])

    def write(self, name: str, frame, det: torch.Tensor, best: float) -> None:
        args = self.args
        if args.save_crop:
            self._crops(name, frame, det)
        for x1, y1, x2, y2, score, cls in det.tolist():
            label = "" if args.hide_labels else self.names[int(cls)] + (
                "" if args.hide_conf else f" {score:.2f}")
            draw_box(frame, (x1, y1, x2, y2), int(cls), label, args.line_thickness)
            if self.csv:
                self.csv.writerow([name, int(cls), self.names[int(cls)], f"{score:.5f}",
                                   *(f"{v:.1f}" for v in (x1, y1, x2, y2))])
        cv2.imwrite(str(self.folder / f"{name}.jpg"), frame)
        if args.save_txt:
            label_file = self.folder / "labels" / f"{name}.txt"
            label_file.parent.mkdir(exist_ok=True)
            label_file.write_text(label_text(det, frame.shape[:2], args.save_conf))
        counts = Counter(self.names[c] for c in det[:, 5].int().tolist())
        found = ", ".join(f"{n} {k}" for k, n in counts.items()) or (
            f"nothing above --conf-thres {self.conf_thres:.3g} (highest score {best:.3g})")
        print(f"{name}: {found}")

    def _crops(self, name: str, frame, det: torch.Tensor) -> None:
        """Each box cut from the frame before anything is drawn on it."""
        height, width = frame.shape[:2]
        for number, (x1, y1, x2, y2, _, cls) in enumerate(det.tolist()):
            left, top = max(int(x1), 0), max(int(y1), 0)
            right, bottom = min(int(round(x2)), width), min(int(round(y2)), height)
            if right <= left or bottom <= top:
                continue
            folder = self.folder / "crops" / self.names[int(cls)]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{name}_{number}.jpg"), frame[top:bottom, left:right])

    def close(self) -> None:
        if self.csv_file:
            self.csv_file.close()


def run(**options) -> tuple[Path, dict[str, torch.Tensor]]:
    """Detect from Python: ``detect.run(weights="best.pt", source="images/")`` is the command
    line with the same names; returns the result folder and each frame's detections by name,
    [n, 6]: x1, y1, x2, y2 (pixels of the frame), score, class."""
    detections: dict[str, torch.Tensor] = {}
    folder = main(args_from_keywords(get_args_parser(), options, "detect"), detections)
    return folder, detections


if __name__ == "__main__":
    run_script(main, get_args_parser())
