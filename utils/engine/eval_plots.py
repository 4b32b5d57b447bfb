"""The evaluation's pictures, as the ultralytics peers draw them: precision against recall,
precision, recall and F1 against the score threshold, the confusion matrix (with its numbers
in a .csv), and the training set's label statistics (labels.jpg).

Each figure carries one line of the run's record at its foot: the fingerprint of the weights
evaluated, the seed and the git commit where known. What test.py and train.py call:
:func:`write_eval_plots` (the evaluation's plots into a folder), :func:`plots_after_training`
and :func:`write_labels_plot` (train.py's), :func:`plots_folder` (where test.py writes them).

Drawing touches no model and draws from no random generator: a training's bits are the same
with or without its plots. matplotlib is imported inside the functions, on the Agg backend.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from utils.base.atomic_io import atomic_write_text
from utils.base.errors import counted
from utils.base.repro import state_fingerprint
from utils.core.bootstrap import resample_counts
from utils.core.confusion import CONF, IOU, confusion_matrix, normalize_by_true
from utils.core.curves import PRBand, confidence_curves, pr_band, pr_curves, ranked_detections
from utils.data.plots import class_color
from utils.engine.evaluation import EvalResult

if TYPE_CHECKING:
    from utils.engine.loop import Training

LEGEND_CLASSES = 20  # above this many classes the legend names the mean curves only
CELL_NUMBERS = 30  # above this many rows the confusion matrix has no per-cell numbers
RUN_MARKERS = ("opt.yaml", "repro.yaml", "results.txt")  # what train.py writes into a run folder
DPI = 150
MEAN50, MEAN50_95 = "#08306b", "#d95f02"  # the thick lines: dark blue, dark orange
CURVE_FILES = ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png")
CONFUSION_FILES = ("confusion_matrix.png", "confusion_matrix_normalized.png",
                   "confusion_matrix.csv")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _rgb(cls: int) -> tuple[float, float, float]:
    """The class's colour in the batch images (utils.data.plots), as matplotlib's RGB."""
    b, g, r = class_color(cls)
    return r / 255, g / 255, b / 255


def _line_color(k: int, count: int):
    """The k-th of ``count`` class curves: tab10 without its blue and orange (the mean
    curves' hues) up to 8 classes, else tab20's; the batch images' palette has too many
    near-equal reds for lines."""
    import matplotlib
    if count <= 8:
        return matplotlib.colormaps["tab10"](k + 2)
    return matplotlib.colormaps["tab20"](k % 20)


def _save(fig, path: Path, footer: str) -> Path:
    """Write ``fig`` with ``footer`` in small grey type below everything drawn (tick labels
    may reach past the figure's edge: the footer goes under the bounding box of it all, which
    the tight save then takes in, so it is neither clipped nor written over a label)."""
    if fig.get_layout_engine() is not None:
        fig.canvas.draw()  # runs the figure's layout, then holds it: the footer must not move it
        fig.set_layout_engine("none")
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
    fig.text(box.x0 / fig.get_figwidth(), (box.y0 - 0.06) / fig.get_figheight(), footer,
             fontsize=6.5, color="0.35", ha="left", va="top")
    kwargs = {"pil_kwargs": {"quality": 90}} if path.suffix == ".jpg" else {}
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.12, **kwargs)
    _pyplot().close(fig)
    return path


def footer_text(fingerprint: str | None = None, seed: int | None = None,
                commit: str | None = None, note: str | None = None) -> str:
    """The one-line record at a figure's foot; the parts not known are left out."""
    parts = [f"weights {fingerprint}" if fingerprint else None,
             f"seed {seed}" if seed is not None else None, _short_commit(commit), note]
    return " | ".join(p for p in parts if p)


def _short_commit(commit: str | None) -> str | None:
    if not commit:
        return None
    dirty = "uncommitted" in commit
    return f"commit {commit.split()[0][:10]}" + (" + uncommitted changes" if dirty else "")


def run_record(run_dir: Path | None) -> dict:
    """{'seed', 'commit'} of a run folder's repro.yaml (the commit of its latest leg); empty
    when there is none to read."""
    path = Path(run_dir) / "repro.yaml" if run_dir else None
    if path is None or not path.is_file():
        return {}
    try:
        record = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}  # a picture's footnote is no reason to fail; the drift tools say what is wrong
    legs = [record] + list(record.get("resumes") or [])
    commits = [(leg.get("environment") or {}).get("git_commit") for leg in legs]
    return {"seed": (record.get("options") or {}).get("seed"),
            "commit": next((c for c in reversed(commits) if c), None)}


def run_folder_of(weights: str | Path) -> Path | None:
    """RUN for weights at RUN/weights/NAME (a folder train.py wrote), else None."""
    folder = Path(weights).parent
    if folder.name == "weights" and any((folder.parent / m).is_file() for m in RUN_MARKERS):
        return folder.parent
    return None


def plots_folder(weights: str | Path, plots: bool | None, plots_dir: str | Path | None
                 ) -> Path | None:
    """Where test.py writes its plots: ``plots_dir`` when given (unless ``plots`` is False),
    else the run folder of ``weights`` unless ``plots`` is False, else beside the weights when
    ``plots`` is True; None: no plots."""
    if plots is False:
        return None
    if plots_dir is not None:
        return Path(plots_dir)
    run = run_folder_of(weights)
    if run is not None:
        return run
    return Path(weights).parent if plots else None


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.3",
            wrap=True)


def _class_names(result: EvalResult) -> list[str]:
    """Names of the classes the curves are drawn for (those with ground truth), in order."""
    return [c.name for c in result.per_class]


def _has_truth(result: EvalResult) -> bool:
    return result.matches is not None and len(result.matches.classes) > 0


def _legend(ax, count: int, title: str | None = None) -> None:
    """Outside the axes on the right, so it never covers a curve."""
    size = 8 if count <= 10 else 7
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=size,
              title=title, title_fontsize=size, frameon=False)


def _class_lines(ax, x: np.ndarray, curves: np.ndarray, labels: list[str], what: str
                 ) -> str:
    """Each class's curve [K, G] thin, named in the legend with ``labels`` [K] up to
    LEGEND_CLASSES classes; above that grey and unnamed. Returns the legend's title: what the
    classes' numbers are (``what``), or what the grey lines are."""
    few = len(curves) <= LEGEND_CLASSES
    for k, values in enumerate(curves):
        ax.plot(x, values, linewidth=1.0 if few else 0.6, alpha=0.9 if few else 0.35,
                color=_line_color(k, len(curves)) if few else "0.45",
                label=labels[k] if few else None)
    return what if few else f"{counted(len(curves), 'class')}: one thin grey line each"


def plot_pr_curve(result: EvalResult, path: Path, footer: str, band: PRBand | None = None
                  ) -> Path:
    """PR_curve.png: precision against recall at IoU 0.5, each class thin with its AP50, the
    mean thick with mAP@0.5, the 0.5:0.95 mean dashed; ``band``: the image bootstrap's."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    title = None
    if not _has_truth(result):
        _note(ax, "no ground truth among the evaluated images: no curve to draw")
    else:
        curves = pr_curves(result.matches)
        labels = [f"{c.name} {c.ap50:.3f}" for c in result.per_class]
        title = _class_lines(ax, curves.recall, curves.per_class, labels, "class, AP@0.5")
        if band is not None:
            share = f"{band.level:.0%}"
            ax.fill_between(curves.recall, band.low50, band.high50, color=MEAN50, alpha=0.18,
                            linewidth=0, label=f"{share} band, mAP@0.5 ({band.resamples} image "
                                               "resamples)")
            ax.fill_between(curves.recall, band.low50_95, band.high50_95, color=MEAN50_95,
                            alpha=0.18, linewidth=0, label=f"{share} band, mAP@0.5:0.95")
        ax.plot(curves.recall, curves.mean50, color=MEAN50, linewidth=3,
                label=f"all classes mAP@0.5 {result.map50:.3f}")
        ax.plot(curves.recall, curves.mean50_95, color=MEAN50_95, linewidth=3,
                linestyle="--", label=f"all classes mAP@0.5:0.95 {result.map50_95:.3f}")
        _legend(ax, len(labels) + 4, title)
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Precision-recall, IoU 0.5 (COCO: 101 recall points, all areas, 100 "
                 f"detections), {counted(result.images, 'image')}", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path, footer)


def plot_confidence_curves(result: EvalResult, folder: Path, footer: str) -> list[Path]:
    """F1_curve.png, P_curve.png, R_curve.png: each against the score threshold (IoU 0.5),
    each class thin, the mean thick, and the threshold of highest mean F1 marked: where
    results.txt's P, R and F1 are read."""
    plt = _pyplot()
    curves = confidence_curves(ranked_detections(result.matches)) if _has_truth(result) \
        else None
    written = []
    for key, name, attr, index in (("F1", "F1", "f1", 3), ("P", "Precision", "precision", 1),
                                   ("R", "Recall", "recall", 2)):
        fig, ax = plt.subplots(figsize=(9, 6))
        if curves is None:
            _note(ax, "no ground truth among the evaluated images: no curve to draw")
        else:
            values, mark = getattr(curves, attr), curves.at_best()
            labels = [f"{n} {v:.3f}" for n, v in zip(_class_names(result), values[:, curves.best])]
            title = _class_lines(ax, curves.confidence, values, labels,
                                 f"class, {name} at confidence {mark[0]:.3f}")
            ax.plot(curves.confidence, values.mean(0), color=MEAN50, linewidth=3,
                    label=f"all classes {mark[index]:.3f} at {mark[0]:.3f}")
            ax.axvline(mark[0], color="0.3", linestyle=":", linewidth=1)
            ax.plot([mark[0]], [mark[index]], "o", color=MEAN50_95, markersize=8, zorder=5,
                    label=f"marked: confidence {mark[0]:.3f}, highest mean F1")
            _legend(ax, len(labels) + 2, title)
        ax.set(xlabel="Confidence (score threshold)", ylabel=name, xlim=(0, 1), ylim=(0, 1.02))
        ax.set_title(f"{name} against the score threshold, IoU 0.5; marked: the threshold of "
                     "results.txt's P, R, F1", fontsize=10)
        ax.grid(alpha=0.3)
        written.append(_save(fig, folder / f"{key}_curve.png", footer))
    return written


def result_confusion(result: EvalResult, conf: float = CONF, iou: float = IOU) -> np.ndarray:
    """The confusion matrix [C+1, C+1] (rows true, C background) of an evaluation's boxes."""
    images = result.per_image
    top = max([len(result.names) - 1] + [int(c.max()) for im in images
                                         for c in (im.gt_classes, im.classes) if len(c)])
    detections = [np.column_stack((im.boxes.reshape(-1, 4), im.scores, im.classes))
                  for im in images]
    labels = [np.column_stack((im.gt_classes, im.gt_boxes.reshape(-1, 4))) for im in images]
    return confusion_matrix(detections, labels, top + 1, conf, iou)


def _axis_names(names: list[str], size: int) -> list[str]:
    names = list(names) + [str(i) for i in range(len(names), size - 1)]
    return names[:size - 1] + ["background"]


def _cell_numbers(ax, shown: np.ndarray, normalized: bool, top: float) -> None:
    """Each non-empty cell's number, white on the dark cells."""
    size = len(shown)
    fontsize = 10 if size <= 6 else 8 if size <= 15 else 6
    for (y, x), v in np.ndenumerate(shown):
        if not v > 0:  # zero, or NaN (a class with nothing counted): left blank
            continue
        ax.text(x, y, f"{v:.2f}" if normalized else f"{int(v)}", ha="center", va="center",
                fontsize=fontsize, color="white" if v > 0.55 * top else "0.1")


def _confusion_ticks(ax, labels: list[str]) -> None:
    """Names on both axes up to CELL_NUMBERS rows (along x upright while they fit); above, the
    index of every tenth class and 'bg' (background, the last), small. A thin line sets the
    background row and column apart."""
    size = len(labels)
    if size <= CELL_NUMBERS:
        where, shown, fontsize = np.arange(size), labels, 9 if size <= 12 else 7
        upright = size <= 6 and max(len(n) for n in labels) <= 12
    else:
        where = np.append(np.arange(0, size - 1, 10), size - 1)
        shown, fontsize, upright = [str(i) for i in where[:-1]] + ["bg"], 7, True
    ax.set_xticks(where, shown, rotation=0 if upright else 90, fontsize=fontsize)
    ax.set_yticks(where, shown, fontsize=fontsize)
    ax.axhline(size - 1.5, color="0.6", linewidth=0.8)
    ax.axvline(size - 1.5, color="0.6", linewidth=0.8)


def plot_confusion_matrix(matrix: np.ndarray, names: list[str], folder: Path, footer: str,
                          conf: float = CONF, iou: float = IOU) -> list[Path]:
    """confusion_matrix.png (counts) and confusion_matrix_normalized.png (each true class's
    share) of ``matrix`` [C+1, C+1] (rows true, as :func:`utils.core.confusion
    .confusion_matrix` counts); drawn as the peers draw it, true along x, predicted along y."""
    plt = _pyplot()
    size = len(matrix)
    labels = _axis_names(names, size)
    by_class = "" if size <= CELL_NUMBERS else " (classes by index; bg: background)"
    written = []
    for normalized, file in ((False, CONFUSION_FILES[0]), (True, CONFUSION_FILES[1])):
        values = (normalize_by_true(matrix) if normalized else matrix.astype(float)).T
        top = 1.0 if normalized else float(max(matrix.max(), 1))
        side = min(11.0, 3.5 + 0.4 * size)
        fig, ax = plt.subplots(figsize=(side + 2.0, side))
        image = ax.imshow(np.ma.masked_where(~(values > 0), values), cmap="Blues", vmin=0,
                          vmax=top, interpolation="nearest")
        scale = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                             label="share of the true class" if normalized else "boxes")
        if not normalized:
            scale.ax.yaxis.get_major_locator().set_params(integer=True)
        if size <= CELL_NUMBERS:
            _cell_numbers(ax, values, normalized, top)
        _confusion_ticks(ax, labels)
        ax.set_xlabel("True" + by_class)
        ax.set_ylabel("Predicted" + by_class)
        kind = "each true class's share" if normalized else "counts"
        ax.set_title(f"Confusion matrix ({kind}), {counted(size - 1, 'class')}: score > {conf:g}, "
                     f"IoU > {iou:g}", fontsize=10)
        written.append(_save(fig, folder / file, footer))
    return written


def write_confusion_csv(matrix: np.ndarray, names: list[str], path: Path) -> Path:
    """confusion_matrix.csv: a header of the predicted classes and background, then one row per
    true class and background, the counts of ``matrix`` [C+1, C+1] (rows true)."""
    labels = _axis_names(names, len(matrix))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["true \\ predicted", *labels])
    for label, row in zip(labels, matrix.tolist()):
        writer.writerow([label, *row])
    atomic_write_text(path, text.getvalue())
    return path


def _label_hist(fig, ax, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str,
                title: str) -> None:
    """A 2-D histogram of label boxes on the unit square; empty bins left white."""
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel, aspect="equal")
    ax.set_title(title, fontsize=10)
    if not len(x):
        _note(ax, "no boxes")
        return
    # vmin 0: a bin of one box is pale blue, not the colour map's white
    *_, image = ax.hist2d(x, y, bins=50, range=[[0, 1], [0, 1]], cmin=1, cmap="Blues", vmin=0)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="boxes")
    bar.ax.yaxis.get_major_locator().set_params(integer=True)


def plot_labels(labels: list[np.ndarray], names: list[str], path: Path, footer: str) -> Path:
    """labels.jpg: the boxes of a set's labels (per image [n, 5] class, x, y, w, h as fractions
    of the image): instances per class, box centres, box widths and heights."""
    plt = _pyplot()
    boxes = np.concatenate([np.asarray(lab, float).reshape(-1, 5) for lab in labels]
                           or [np.zeros((0, 5))])
    classes = boxes[:, 0].astype(int)
    count = max([len(names)] + [int(classes.max()) + 1 if len(classes) else 0])
    fig = plt.figure(figsize=(12, 10), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.35))
    bar, centres, sizes = (fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]),
                           fig.add_subplot(grid[1, 1]))
    per_class = np.bincount(classes, minlength=count)
    bar.bar(np.arange(count), per_class, color=[_rgb(c) for c in range(count)], width=0.8)
    shown = list(names) + [str(i) for i in range(len(names), count)]
    fontsize = 9 if count <= 20 else 6 if count <= 60 else 5
    bar.set_xticks(np.arange(count), shown, rotation=90 if count > 8 else 0, fontsize=fontsize)
    spare = max(6 - count, 0) / 2  # a few classes' bars stay bar-wide, centred
    bar.set_xlim(-0.6 - spare, count - 0.4 + spare)
    bar.set_ylabel("instances")
    bar.set_ylim(bottom=0, top=max(1, per_class.max(initial=0)) * 1.05)
    if not len(boxes):
        _note(bar, "no boxes in the labels")
    bar.set_title(f"{counted(len(boxes), 'box', 'boxes')} of {counted(count, 'class')} in "
                  f"{counted(len(labels), 'image')}", fontsize=10)
    _label_hist(fig, centres, boxes[:, 1], boxes[:, 2], "x (fraction of the width)",
                "y (fraction of the height, 0 at the top)", "box centres")
    centres.invert_yaxis()  # as in the image
    _label_hist(fig, sizes, boxes[:, 3], boxes[:, 4], "width (fraction of the image)",
                "height (fraction of the image)", "box sizes")
    return _save(fig, path, footer)


def write_eval_plots(result: EvalResult, folder: Path, footer: str,
                     bootstrap: tuple[int, int] | None = None, conf: float = CONF,
                     iou: float = IOU) -> list[Path]:
    """Every evaluation plot of ``result`` into ``folder`` (CURVE_FILES, CONFUSION_FILES);
    returns their paths. ``bootstrap`` (resamples, seed): the band of the PR curve, from the
    image bootstrap's own resamples (the same seed draws the same images as its intervals)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    band = None
    if bootstrap and _has_truth(result):
        resamples, seed = bootstrap
        band = pr_band(result.matches, resample_counts(len(result.matches.image_ids),
                                                       resamples, seed))
    written = [plot_pr_curve(result, folder / CURVE_FILES[0], footer, band)]
    written += plot_confidence_curves(result, folder, footer)
    matrix = result_confusion(result, conf, iou)
    written += plot_confusion_matrix(matrix, result.names, folder, footer, conf, iou)
    written.append(write_confusion_csv(matrix, result.names, folder / CONFUSION_FILES[2]))
    return written


def no_evaluation_message(epoch: int, weights: Path) -> str:
    """What train.py says when its last epoch has no evaluation to plot."""
    return (f"no evaluation plots: epoch {epoch}, the last trained, was not evaluated "
            f"(--notest evaluates the schedule's last epoch only); python test.py --weights "
            f"{weights} evaluates it and writes them")


def plots_after_training(training: Training, result: EvalResult | None, epoch: int) -> str:
    """The plots of the last epoch's evaluation (``result``, None when it was not evaluated)
    into the run folder; returns the line to log. Reads the EMA weights (those evaluated) for
    the fingerprint, and changes nothing."""
    if result is None:
        return no_evaluation_message(epoch, training.run_dir / "weights" / "last.pt")
    record = run_record(training.run_dir)
    footer = footer_text(state_fingerprint(training.ema.module.state_dict()),
                         training.plan.options.seed, record.get("commit"),
                         f"epoch {epoch}, EMA weights")
    written = write_eval_plots(result, training.run_dir, footer)
    return (f"evaluation plots of epoch {epoch} in {training.run_dir}: "
            f"{', '.join(p.name for p in written)}")


def write_labels_plot(training: Training) -> Path:
    """labels.jpg of the training set, in the run folder."""
    record = run_record(training.run_dir)
    footer = footer_text(None, training.plan.options.seed, record.get("commit"),
                         f"train set {training.digests.get('train', '')[:16]}")
    dataset = training.train_loader.dataset
    return plot_labels(dataset.labels, training.names, training.run_dir / "labels.jpg", footer)
