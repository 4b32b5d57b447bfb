"""Draw a model's detections on images or video frames.

    python detect.py --weights runs/train/exp/weights/best.pt --source data/shapes/images/val
    python detect.py --weights yolov3.weights --cfg cfg/yolov3.cfg --source "photos/*.jpg"

Annotated files go to runs/detect/<name>/ (exp, exp2, ...); --save-txt adds YOLO-format labels.
"""
from __future__ import annotations

import argparse
import glob
from pathlib import Path

import cv2
import torch

from utils.augment import letterbox, resize_longest_side
from utils.boxes import letterbox_to_original, xyxy_to_xywh
from utils.checkpoint import check_img_size, load_inference_model
from utils.data_config import IMAGE_SUFFIXES, read_names
from utils.device import select_device
from utils.errors import ImageError, InputError, run_script
from utils.image_io import load_image
from utils.inputs import to_model_input
from utils.nms import non_max_suppression
from utils.plots import draw_box
from utils.precision import checkpoint_autocast, forward_context
from utils.run_record import next_run_dir

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


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


def frames(path: Path):
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
            yield f"{path.stem}_{index:06d}", frame
            index += 1
        capture.release()
    else:
        yield path.stem, load_image(path)


@torch.no_grad()
def detect_frame(model, frame, img_size: int, device, conf_thres: float, iou_thres: float,
                 classes: list[int] | None, autocast=None) -> torch.Tensor:
    """Detections [n, 6] (x1, y1, x2, y2 in the frame's pixels, score, class). The frame is
    resized and letterboxed exactly as test.py and training see an image; ``autocast``: the
    training's precision (a factory of autocast contexts, None for fp32)."""
    resized = resize_longest_side(frame, img_size)
    img, _, pad = letterbox(resized, (img_size, img_size), scaleup=False)
    tensor = torch.from_numpy(img[:, :, ::-1].transpose(2, 0, 1).copy())[None]
    with forward_context(autocast):
        detections, _ = model(to_model_input(tensor, device))
    detections = detections.float()
    det = non_max_suppression(detections, conf_thres, iou_thres, classes,
                              multi_label=False)[0].cpu()
    det[:, :4] = letterbox_to_original(det[:, :4], resized.shape[1] / frame.shape[1], pad,
                                       frame.shape[:2])
    return det


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects with a YOLOv3 model.")
    parser.add_argument("--weights", required=True, help="a .pt checkpoint or darknet .weights")
    parser.add_argument("--cfg", default=None, help="cfg for .weights files")
    parser.add_argument("--names", default=None, help="class names file for .weights files")
    parser.add_argument("--source", default="data/shapes/images/val",
                        help="image, video, folder or glob")
    parser.add_argument("--img-size", type=int, default=None, help="default: the training size")
    parser.add_argument("--conf-thres", type=float, default=0.3)
    parser.add_argument("--iou-thres", type=float, default=0.6)
    parser.add_argument("--classes", type=int, nargs="+", default=None, help="keep these only")
    parser.add_argument("--device", default="", help="cpu, 0, or empty for automatic")
    parser.add_argument("--fuse", action="store_true", help="fold batch norm into convolutions")
    parser.add_argument("--save-txt", action="store_true", help="also write YOLO label files")
    parser.add_argument("--project", default="runs/detect")
    parser.add_argument("--name", default="exp")
    return parser


def main(args: argparse.Namespace) -> Path:
    device = select_device(args.device)
    model, meta = load_inference_model(args.weights, args.cfg)
    if args.fuse:
        model.fuse()
    model.to(device, memory_format=torch.channels_last).eval()
    names = meta.get("names") or (read_names(Path(args.names)) if args.names
                                  else [str(i) for i in range(model.num_classes)])
    if len(names) != model.num_classes:
        raise InputError(f"{len(names)} class names for a model of {model.num_classes} classes",
                         args.names)
    img_size = args.img_size or meta.get("img_size") or 416
    check_img_size(img_size, model)
    autocast = checkpoint_autocast(meta, device)
    sources = list_sources(args.source)
    out_dir = next_run_dir(args.project, args.name)
    for path in sources:
        for name, frame in frames(path):
            det = detect_frame(model, frame, img_size, device, args.conf_thres, args.iou_thres,
                               args.classes, autocast)
            for x1, y1, x2, y2, score, cls in det.tolist():
                draw_box(frame, (x1, y1, x2, y2), int(cls), f"{names[int(cls)]} {score:.2f}")
            cv2.imwrite(str(out_dir / f"{name}.jpg"), frame)
            if args.save_txt:
                h, w = frame.shape[:2]
                xywhn = xyxy_to_xywh(det[:, :4]) / torch.tensor([w, h, w, h])
                (out_dir / f"{name}.txt").write_text("".join(
                    f"{int(c)} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f} {s:.5f}\n"
                    for (x, y, bw, bh), s, c in zip(xywhn.tolist(), det[:, 4].tolist(),
                                                    det[:, 5].tolist())))
            counts = {}
            for c in det[:, 5].int().tolist():
                counts[names[c]] = counts.get(names[c], 0) + 1
            found = ", ".join(f"{n} {k}" for k, n in counts.items()) or "nothing"
            print(f"{name}: {found}")
    print(f"Results saved to {out_dir}")
    return out_dir


if __name__ == "__main__":
    run_script(main, get_args_parser())
