"""Draw a model's detections on images or video frames.

    python detect.py --weights runs/train/exp/weights/best.pt --source data/shapes/images/val
    python detect.py --weights yolov3.weights --cfg cfg/yolov3.cfg --source "photos/*.jpg"

    python detect.py --weights best.onnx --source data/shapes/images/val   # via onnxruntime

Annotated files go to runs/detect/<name>/ (exp, exp2, ...), one per source file (``a.png`` and
``a.jpg`` become ``a_png.jpg`` and ``a_jpg.jpg``); --save-txt adds YOLO label files (5 columns,
the format training reads; --save-conf adds the score as a 6th). An unreadable image is skipped
with its reason and the run ends with exit status 2 after the others are done.
"""
from __future__ import annotations

import argparse
import glob
from collections import Counter
from pathlib import Path
from typing import Callable

import cv2
import torch

from models.onnx_model import is_onnx_file, load_onnx_model
from utils.base.device import add_device_argument, select_device
from utils.base.errors import ImageError, InputError, counted, run_script
from utils.core.boxes import letterbox_to_original, xyxy_to_xywh
from utils.core.nms import highest_score, non_max_suppression
from utils.data.augment import letterbox, resize_longest_side
from utils.data.data_config import IMAGE_SUFFIXES, read_names
from utils.data.image_io import load_image
from utils.data.inputs import to_model_input
from utils.data.plots import draw_box
from utils.engine.checkpoint import check_img_size, load_inference_model
from utils.engine.precision import PRECISIONS, autocast_factory, forward_context
from utils.engine.run_record import next_run_dir

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
# uint8 [1, 3, S, S] RGB letterboxed image -> decoded predictions [1, N, 5 + C] float32
Predictor = Callable[[torch.Tensor], torch.Tensor]


def list_sources(source: str) -> list[Path]:
    """An image or video file, a folder (sorted), or a glob pattern."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                       + VIDEO_SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(source))
    if not files:
        raise InputError(f"--source {source}: no images or videos found")
    return files


def output_stems(files: list[Path]) -> dict[Path, str]:
    """A distinct output name for each source: its stem, or ``stem_suffix`` when two sources
    share a stem (``a.png``, ``a.jpg``), then a counter when even that repeats (the same name
    in two folders of a glob), so no result overwrites another."""
    stems = Counter(p.stem for p in files)
    names = {p: p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
             for p in files}
    taken: Counter = Counter()
    repeats = Counter(names.values())
    for p in files:
        if repeats[names[p]] > 1:
            taken[names[p]] += 1
            names[p] = f"{names[p]}_{taken[names[p]]}"
    return names


def frames(path: Path, stem: str):
    """Yield (name, BGR frame) for an image file or every frame of a video."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ImageError("OpenCV cannot open this video", path)
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield f"{stem}_{index:06d}", frame
            index += 1
        capture.release()
    else:
        yield stem, load_image(path)


def torch_predictor(model, device: torch.device, autocast=None) -> Predictor:
    """The model's decoded predictions, computed in ``autocast``'s precision (None: fp32)."""
    @torch.no_grad()
    def predict(tensor: torch.Tensor) -> torch.Tensor:
        with forward_context(autocast):
            detections, _ = model(to_model_input(tensor, device))
        return detections.float()
    return predict


def detect_frame(predict: Predictor, frame, img_size: int, conf_thres: float,
                 iou_thres: float, classes: list[int] | None) -> tuple[torch.Tensor, float]:
    """Detections [n, 6] (x1, y1, x2, y2 in the frame's pixels, score, class), and the highest
    score of any box before the threshold (what to say when nothing passes it). The frame is
    resized and letterboxed exactly as test.py and training see an image."""
    resized = resize_longest_side(frame, img_size)
    img, _, pad = letterbox(resized, (img_size, img_size), scaleup=False)
    tensor = torch.from_numpy(img[:, :, ::-1].transpose(2, 0, 1).copy())[None]
    prediction = predict(tensor)
    det = non_max_suppression(prediction, conf_thres, iou_thres, classes,
                              multi_label=False)[0].cpu()
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
    parser.add_argument("--conf-thres", type=float, default=0.3,
                        help="score threshold (default: 0.3)")
    parser.add_argument("--iou-thres", type=float, default=0.6,
                        help="NMS IoU threshold (default: 0.6)")
    parser.add_argument("--classes", type=int, nargs="+", default=None, help="keep these only")
    add_device_argument(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="arithmetic of the forward pass (default: the checkpoint's)")
    parser.add_argument("--fuse", action="store_true", help="fold batch norm into convolutions")
    parser.add_argument("--save-txt", action="store_true",
                        help="also write YOLO label files (class x y w h, normalized)")
    parser.add_argument("--save-conf", action="store_true",
                        help="with --save-txt: add the score as a 6th column (such files are "
                             "results, not training labels)")
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
        return predict, meta, meta["num_classes"]
    device = select_device(args.device)
    model, meta = load_inference_model(args.weights, args.cfg)
    if args.fuse:
        model.fuse()
    model.to(device, memory_format=torch.channels_last).eval()
    precision = args.precision or (meta.get("args") or {}).get("precision", "fp32")
    print(f"precision {precision}" + ("" if args.precision else " (the checkpoint's)"))
    check_img_size(inference_size(args, meta), model)
    return torch_predictor(model, device, autocast_factory(precision, device)), meta, \
        model.num_classes


def inference_size(args: argparse.Namespace, meta: dict) -> int:
    """--img-size as given (0 is refused, not replaced), else the training size."""
    return args.img_size if args.img_size is not None else meta.get("img_size") or 416


def main(args: argparse.Namespace) -> Path:
    if args.save_conf and not args.save_txt:
        raise InputError("--save-conf adds a column to the files --save-txt writes: add "
                         "--save-txt")
    predict, meta, num_classes = load_predictor(args)
    names = class_names(args, meta.get("names"), num_classes)
    img_size = inference_size(args, meta)
    if img_size <= 0 or img_size % 32:
        raise InputError(f"--img-size {img_size}: must be a positive multiple of 32 (the "
                         "largest stride)")
    if is_onnx_file(args.weights) and img_size != meta["img_size"]:
        raise InputError(f"--img-size {img_size}: this ONNX file takes {meta['img_size']} px "
                         "only (export again with --img-size)", args.weights)
    sources = list_sources(args.source)
    out_dir = next_run_dir(args.project, args.name)
    skipped = []
    for path, stem in output_stems(sources).items():
        try:
            for name, frame in frames(path, stem):
                det, best = detect_frame(predict, frame, img_size, args.conf_thres,
                                         args.iou_thres, args.classes)
                save_results(out_dir, name, frame, det, names, args, best)
        except ImageError as err:
            skipped.append(str(err))
            print(f"skipped {err}")
    if args.save_txt:
        print("labels: class x y w h (normalized)" + (", then the score" if args.save_conf
                                                       else ""))
    print(f"Results saved to {out_dir}")
    if skipped:
        raise ImageError(f"{len(skipped)} of {len(sources)} sources could not be read "
                         f"(results for the others are in {out_dir}): " + "; ".join(skipped))
    return out_dir


def save_results(out_dir: Path, name: str, frame, det: torch.Tensor, names: list[str],
                 args: argparse.Namespace, best: float) -> None:
    """The annotated image, the label file if asked (in labels/, as the ultralytics tools write
    them), and one line of counts; when nothing passed the threshold, the highest score."""
    for x1, y1, x2, y2, score, cls in det.tolist():
        draw_box(frame, (x1, y1, x2, y2), int(cls), f"{names[int(cls)]} {score:.2f}")
    cv2.imwrite(str(out_dir / f"{name}.jpg"), frame)
    if args.save_txt:
        label = out_dir / "labels" / f"{name}.txt"
        label.parent.mkdir(exist_ok=True)
        label.write_text(label_text(det, frame.shape[:2], args.save_conf))
    counts = Counter(names[c] for c in det[:, 5].int().tolist())
    found = ", ".join(f"{n} {k}" for k, n in counts.items()) or (
        f"nothing above --conf-thres {args.conf_thres} (highest score {best:.3g})")
    print(f"{name}: {found}")


if __name__ == "__main__":
    run_script(main, get_args_parser())
