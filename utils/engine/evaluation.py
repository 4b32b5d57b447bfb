"""Evaluation of a model on a validation set, by COCO's rules: what train.py runs after an epoch
and test.py runs on a checkpoint, so both give the same numbers for the same weights."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from utils.core.boxes import letterbox_to_original
from utils.core.loss import LOSS_PARTS, yolo_loss
from utils.core.metrics import SUMMARY, ImageDetections, MatchTable, coco_evaluate
from utils.core.nms import non_max_suppression
from utils.data.coco_json import category_ids, detection_records, image_ids, labels_to_pixels
from utils.data.data_config import list_images
from utils.data.datasets import YoloDataset
from utils.data.inputs import to_model_input
from utils.data.plots import plot_batch
from utils.engine.precision import forward_context

PLOT_CONF = 0.25
VAL_LOSS_PARTS = LOSS_PARTS[:3]  # box, obj, cls: results.txt has no validation total


@dataclass
class ClassResult:
    name: str
    labels: int
    precision: float
    recall: float
    ap50: float
    ap50_95: float


@dataclass
class EvalResult:
    """P, R and F1 at the best-F1 threshold ``f1_conf`` (the score threshold of the highest
    mean F1 over the classes, IoU 0.5; 0.0 when no threshold finds a true positive: F1 0);
    mAP@0.5 and mAP@0.5:0.95 are COCO's AP50 and AP;
    ``coco`` holds all 12 COCO numbers by name; ``matches`` the per-image matching they come
    from (what an image bootstrap resamples); ``names`` every class the model scores;
    ``per_image`` each image's boxes and ground truth (what a confusion matrix counts)."""
    precision: float = 0.0
    recall: float = 0.0
    map50: float = 0.0
    map50_95: float = 0.0
    f1: float = 0.0
    f1_conf: float = 0.0
    losses: tuple[float, float, float] = (0.0, 0.0, 0.0)  # box, obj, cls per image
    coco: dict[str, float] = field(default_factory=dict)
    per_class: list[ClassResult] = field(default_factory=list)
    images: int = 0
    labels: int = 0
    matches: MatchTable | None = field(default=None, repr=False)
    names: list[str] = field(default_factory=list)
    per_image: list[ImageDetections] = field(default_factory=list, repr=False)
    speed: dict[str, float] = field(default_factory=dict)  # ms per image, by stage


def make_val_dataset(data, img_size: int, batch_size: int, single_cls: bool = False,
                     rect: bool = False, cache_images: bool | None = False) -> YoloDataset:
    """The validation set exactly as train.py evaluates it: letterboxed, no augmentation."""
    files = list_images(data.valid, data.path, data.lines.get("valid"))
    return YoloDataset(files, data.num_classes, img_size, augment=False, rect=rect,
                       batch_size=batch_size, cache_images=cache_images, single_cls=single_cls)


@torch.no_grad()
def evaluate(model, loader, device: torch.device, hyp: dict | None = None,
             conf_thres: float = 0.001, iou_thres: float = 0.6, names: list[str] | None = None,
             plot_path: Path | None = None, coco_json: list | None = None,
             progress: bool = True, autocast=None, single_cls: bool = False,
             score: bool = True, memory_format: torch.memory_format = torch.channels_last,
             fixed_order_loss: bool = False) -> EvalResult:
    """Run ``model`` over ``loader`` (a :class:`YoloDataset`'s) and score it by COCO's rules;
    with ``hyp`` also the validation losses. ``coco_json``, when a list, receives COCO result
    records in original image pixels. ``autocast``: a context manager factory for the forward
    pass (the training's precision). ``single_cls``: a multi-class model's boxes are scored as
    one class (:func:`as_one_class`). ``score=False`` times the stages (``speed``) and
    scores nothing. ``memory_format``: the model's layout (its inputs are given it);
    ``fixed_order_loss``: the validation losses' means in a thread-count-free order."""
    dataset = loader.dataset
    names = names or [str(i) for i in range(model.num_classes)]
    index_of = {str(f): i for i, f in enumerate(dataset.files)}
    ids = image_ids(dataset.files)
    cats = category_ids(names, dataset.files) if coco_json is not None else None
    was_training = model.training
    model.eval()
    records: list[ImageDetections] = []
    loss_sum = torch.zeros(len(VAL_LOSS_PARTS), device=device)
    batches = 0
    # disable=None: a bar on a terminal only, none in a log file.
    bar = tqdm(loader, desc="evaluating", disable=None if progress else True, leave=False)
    clock = StageClock(device)
    for images, targets, paths, placements in bar:
        images = to_model_input(images, device, memory_format)
        clock.lap("preprocess")
        with forward_context(autocast):
            detections, raw = model(images)
        detections, raw = detections.float(), [r.float() for r in raw]
        clock.lap("inference")
        if single_cls:
            detections = as_one_class(detections)
        if hyp is not None:
            _, parts = yolo_loss(raw, targets.to(device), model.anchors(), model.strides(), hyp,
                                 fixed_order=fixed_order_loss, xy_scales=model.xy_scales())
            loss_sum += parts[:len(VAL_LOSS_PARTS)]
        output = non_max_suppression(detections, conf_thres, iou_thres)
        clock.lap("nms", images=len(images))
        if not score:
            batches += 1
            continue
        for det, path, placement in zip(output, paths, placements):
            index = index_of[path]
            det = det.cpu()
            original = placement.original
            boxes = letterbox_to_original(det[:, :4], placement.scale, placement.pad,
                                          original).double().numpy()
            scores, classes = det[:, 4].double().numpy(), det[:, 5].long().numpy()
            labels = dataset.labels[index]
            records.append(ImageDetections(ids[index], labels_to_pixels(labels, original),
                                           labels[:, 0].astype(int), boxes, scores, classes))
            if coco_json is not None:
                coco_json.extend(detection_records(ids[index], boxes, scores, classes, names,
                                                     cats))
        if batches == 0 and plot_path is not None:
            # mAP needs every box down to conf_thres; a picture only the confident ones.
            plot_batch(images, [d[d[:, 4] > PLOT_CONF] for d in output], plot_path, names)
        batches += 1
        clock.restart()  # the scoring above is neither stage: not counted
    model.train(was_training)
    if not score:
        return EvalResult(images=clock.images, speed=clock.per_image_ms())
    result = eval_result(coco_evaluate(records), records, names,
                         (loss_sum / max(batches, 1)).tolist() if hyp is not None else None,
                         conf_thres)
    result.speed = clock.per_image_ms()
    return result


class StageClock:
    """Wall time per stage of the evaluation loop, as the ultralytics tools report it:
    pre-process (loading, letterbox, to the device), inference, NMS; in ms per image. On a GPU
    each lap waits for the device, so a stage is charged its own kernels."""

    def __init__(self, device: torch.device):
        self.device, self.images = device, 0
        self.seconds = {"preprocess": 0.0, "inference": 0.0, "nms": 0.0}
        self.restart()

    def restart(self) -> None:
        self.started = time.perf_counter()

    def lap(self, stage: str, images: int = 0) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[stage] += now - self.started
        self.started, self.images = now, self.images + images

    def per_image_ms(self) -> dict[str, float]:
        return {k: 1000 * v / max(self.images, 1) for k, v in self.seconds.items()}


def as_one_class(detections: torch.Tensor) -> torch.Tensor:
    """[B, N, 5 + C] decoded outputs -> [B, N, 6]: the class scores folded into one, so NMS
    scores each box by its objectness alone and keeps one box per anchor, as it scores a model
    trained with --single-cls."""
    if detections.shape[-1] <= 6:
        return detections
    return torch.cat((detections[..., :5], detections[..., 5:].amax(-1, keepdim=True)), -1)


def eval_result(metrics, records: list[ImageDetections], names: list[str], losses,
                conf_thres: float = 0.0) -> EvalResult:
    """The evaluation of ``records`` from their COCO metrics: the summary, P, R and F1 at the
    best-F1 threshold (not below ``conf_thres``), per-class rows; ``losses`` or None."""
    result = EvalResult(images=len(records), labels=int(sum(len(r.gt_classes) for r in records)),
                        coco=metrics.named(), matches=metrics.table, names=list(names),
                        per_image=records)
    if losses is not None:
        result.losses = tuple(float(v) for v in losses)
    if len(metrics.classes):
        # COCO reports -1 where there is nothing to measure; the mAP columns read 0 then.
        result.map50, result.map50_95 = max(metrics.stats[1], 0.0), max(metrics.stats[0], 0.0)
        result.precision, result.recall = float(metrics.precision.mean()), \
            float(metrics.recall.mean())
        result.f1 = float(metrics.f1.mean())
        if result.f1 > 0:
            # No box under conf_thres was scored, so the F1 curve is flat below it: a best
            # point there (the grid's 0.0) means conf_thres, not "every box".
            result.f1_conf = max(metrics.f1_conf, conf_thres)
        result.per_class = [
            ClassResult(names[c] if c < len(names) else str(c), int(n), float(p), float(r),
                        float(a50), float(a))
            for c, n, p, r, a50, a in zip(metrics.classes, metrics.label_counts,
                                          metrics.precision, metrics.recall, metrics.ap50,
                                          metrics.ap)]
    return result


def format_table(result: EvalResult, kept: bool = True) -> str:
    """The 12 COCO numbers, then P, R, AP50 and AP per class; ``kept``: the detections came
    from this project's model, whose checkpoint keeps the best-F1 threshold."""
    lines = []
    for name, is_ap, iou, area, max_det in SUMMARY:
        kind = "Average Precision" if is_ap else "Average Recall"
        iou_text = "0.50:0.95" if iou is None else f"{0.5 + 0.05 * iou:.2f}"
        lines.append(f" {kind:<18} (AP) @[ IoU={iou_text:<9} | area={area:>6} | "
                     f"maxDets={max_det:>3} ] = {result.coco.get(name, -1.0):.3f}"
                     .replace("(AP)", "(AP)" if is_ap else "(AR)"))
    width = max([12] + [len(c.name) for c in result.per_class])
    lines.append(f"{'class':>{width}} {'labels':>8} {'P':>8} {'R':>8} {'mAP@.5':>8} "
                 f"{'mAP@.5:.95':>10}")
    lines.append(f"{'all':>{width}} {result.labels:>8} {result.precision:8.3f} "
                 f"{result.recall:8.3f} {result.map50:8.3f} {result.map50_95:10.3f}")
    for c in result.per_class:
        lines.append(f"{c.name:>{width}} {c.labels:>8} {c.precision:8.3f} {c.recall:8.3f} "
                     f"{c.ap50:8.3f} {c.ap50_95:10.3f}")
    lines.append(f1_conf_line(result, kept))
    return "\n".join(lines)


def f1_conf_line(result: EvalResult, kept: bool = True) -> str:
    """Where the table's P and R were read: the best-F1 score threshold, which a run's
    checkpoint keeps as detect.py's default --conf-thres."""
    if result.f1 <= 0:
        return "P and R: no score threshold finds a true positive (F1 0 at every one)"
    line = (f"P and R at score threshold {result.f1_conf:.3f}, where the mean F1 is highest "
            f"({result.f1:.3f})")
    return line + ("; a run's checkpoint keeps it for detect.py" if kept else "")
