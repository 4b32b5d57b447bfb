"""Evaluate a trained model on a dataset's validation images: P, R, F1, mAP@0.5, mAP@0.5:0.95.

    python test.py --weights runs/train/exp/weights/best.pt
    python test.py --weights yolov3.weights --cfg cfg/yolov3.cfg --data my.data

train.py calls :func:`evaluate` with the same loader settings (letterbox, padding), so both give
the same mAP for the same weights.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from utils.boxes import xywh_to_xyxy
from utils.checkpoint import load_inference_model
from utils.data_config import list_images, prepare_data
from utils.datasets import YoloDataset, create_dataloader
from utils.device import select_device
from utils.engine import to_model_input
from utils.errors import InputError, run_script
from utils.loss import yolo_loss
from utils.metrics import ap_per_class, match_predictions
from utils.nms import non_max_suppression
from utils.plots import plot_batch


PLOT_CONF = 0.25


@dataclass
class EvalResult:
    precision: float = 0.0
    recall: float = 0.0
    map50: float = 0.0
    map: float = 0.0
    f1: float = 0.0
    losses: tuple[float, float, float] = (0.0, 0.0, 0.0)  # box, obj, cls per image
    per_class: list[tuple] = field(default_factory=list)  # (class, labels, P, R, AP50, AP)
    images: int = 0
    labels: int = 0


def make_val_dataset(data, img_size: int, batch_size: int, single_cls: bool = False,
                     rect: bool = False, cache_images: bool = False) -> YoloDataset:
    """The validation set exactly as train.py evaluates it: letterboxed, no augmentation."""
    files = list_images(data.valid, data.path, data.lines.get("valid"))
    return YoloDataset(files, data.num_classes, img_size, augment=False, rect=rect,
                       batch_size=batch_size, cache_images=cache_images, single_cls=single_cls)


@torch.no_grad()
def evaluate(model, loader, device: torch.device, hyp: dict | None = None,
             conf_thres: float = 0.001, iou_thres: float = 0.6, names: list[str] | None = None,
             plot_path: Path | None = None, coco_json: list | None = None,
             progress: bool = True) -> EvalResult:
    """Run ``model`` over ``loader``; with ``hyp`` also the validation losses.

    ``coco_json``, when a list, receives COCO-style detections in original image pixels.
    """
    was_training = model.training
    model.eval()
    stats = []
    loss_sum = torch.zeros(3, device=device)
    batches = 0
    for i, (images, targets, paths, shapes) in enumerate(
            tqdm(loader, desc="evaluating", disable=not progress, leave=False)):
        images = to_model_input(images, device)
        targets = targets.to(device)
        _, _, height, width = images.shape
        detections, raw = model(images)
        if hyp is not None:
            loss_sum += yolo_loss(raw, targets, model.anchors(), model.strides(), hyp)[1][:3]
        batches += 1
        output = non_max_suppression(detections, conf_thres, iou_thres)
        scale = torch.tensor([width, height, width, height], device=device)
        for k, det in enumerate(output):
            lab = targets[targets[:, 0] == k]
            label_boxes = torch.cat((lab[:, 1:2], xywh_to_xyxy(lab[:, 2:6]) * scale), 1)
            correct = match_predictions(det, label_boxes)
            stats.append((correct.numpy(), det[:, 4].cpu().numpy(), det[:, 5].cpu().numpy(),
                          lab[:, 1].cpu().numpy()))
            if coco_json is not None:
                coco_json.extend(_coco_records(det, paths[k], shapes[k]))
        if i == 0 and plot_path is not None:
            # mAP needs every box down to conf_thres; a picture only the confident ones.
            plot_batch(images, [d[d[:, 4] > PLOT_CONF] for d in output], plot_path, names or [])
    model.train(was_training)
    tp, conf, pred_cls, target_cls = (np.concatenate(x, 0) for x in zip(*stats))
    result = EvalResult(images=len(stats), labels=len(target_cls))
    if hyp is not None:
        result.losses = tuple(float(v) for v in (loss_sum / max(batches, 1)).tolist())
    if len(target_cls) and len(tp):
        m = ap_per_class(tp, conf, pred_cls, target_cls)
        result.precision, result.recall = float(m.precision.mean()), float(m.recall.mean())
        result.f1 = float(m.f1.mean())
        result.map50, result.map = float(m.ap[:, 0].mean()), float(m.ap.mean())
        result.per_class = [(int(c), int(n), float(p), float(r), float(a[0]), float(a.mean()))
                            for c, n, p, r, a in zip(m.classes, m.label_counts, m.precision,
                                                     m.recall, m.ap)]
    return result


def _coco_records(det: torch.Tensor, path: str, shape) -> list[dict]:
    """Detections [n, 6] in letterboxed pixels -> COCO records in original image pixels."""
    (_h0, _w0), (scale, (left, top)) = shape
    boxes = det[:, :4].cpu().clone()
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - left) / scale
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - top) / scale
    stem = Path(path).stem
    image_id = int(stem) if stem.isdigit() else stem
    return [{"image_id": image_id, "category_id": int(c),
             "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
             "score": round(float(s), 5)}
            for (x1, y1, x2, y2), s, c in zip(boxes.tolist(), det[:, 4].tolist(),
                                             det[:, 5].tolist())]


def format_table(result: EvalResult, names: list[str]) -> str:
    head = f"{'class':>12} {'labels':>8} {'P':>8} {'R':>8} {'mAP@.5':>8} {'mAP@.5:.95':>10}"
    rows = [head, f"{'all':>12} {result.labels:>8} {result.precision:8.3f} {result.recall:8.3f} "
                  f"{result.map50:8.3f} {result.map:10.3f}"]
    for c, n, p, r, ap50, ap in result.per_class:
        name = names[c] if c < len(names) else str(c)
        rows.append(f"{name:>12} {n:>8} {p:8.3f} {r:8.3f} {ap50:8.3f} {ap:10.3f}")
    return "\n".join(rows)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a YOLOv3 model (mAP).")
    parser.add_argument("--weights", required=True, help="a .pt checkpoint or darknet .weights")
    parser.add_argument("--cfg", default=None, help="cfg file (default: the checkpoint's)")
    parser.add_argument("--data", default=None, help=".data file (default: the checkpoint's)")
    parser.add_argument("--img-size", type=int, default=None, help="default: the training size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--conf-thres", type=float, default=0.001)
    parser.add_argument("--iou-thres", type=float, default=0.6)
    parser.add_argument("--device", default="", help="cpu, 0, or empty for automatic")
    parser.add_argument("--single-cls", action="store_true")
    parser.add_argument("--fuse", action="store_true", help="fold batch norm into convolutions")
    parser.add_argument("--save-json", action="store_true",
                        help="write COCO-format detections next to the weights")
    return parser


def main(args: argparse.Namespace) -> EvalResult:
    device = select_device(args.device)
    model, meta = load_inference_model(args.weights, args.cfg)
    data_path = args.data or meta.get("data")
    if data_path is None:
        raise InputError("no --data given and the weights do not name one", args.weights)
    data = prepare_data(data_path)
    img_size = args.img_size or meta.get("img_size") or 416
    names = meta.get("names") or data.names
    if args.fuse:
        model.fuse()
    model.to(device, memory_format=torch.channels_last)  # as in training: the same bits
    dataset = make_val_dataset(data, img_size, args.batch_size, args.single_cls)
    loader = create_dataloader(dataset, args.batch_size, workers=0, shuffle=False)
    coco = [] if args.save_json else None
    result = evaluate(model, loader, device, conf_thres=args.conf_thres,
                      iou_thres=args.iou_thres, names=names, coco_json=coco)
    print(format_table(result, names))
    if coco is not None:
        out = Path(args.weights).with_suffix(".detections.json")
        out.write_text(json.dumps(coco))
        print(f"COCO detections: {out}")
    return result


if __name__ == "__main__":
    run_script(main, get_args_parser())
