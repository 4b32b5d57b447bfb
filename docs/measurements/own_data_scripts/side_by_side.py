"""own_data.md's side-by-side table and plot: ours (tools.seed_group folders) against the
ultralytics package (train_ultralytics.py folders), both scored by this project's evaluator.

    PYTHONPATH=. python docs/measurements/own_data_scripts/side_by_side.py \
        SPEC.json OUT.json OUT.png

SPEC.json: {"set name": {"data": ".data file", "epochs": E, "ours": "group folder",
"ultralytics": "folder of seedK/ folders"}, ...}.
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tools import score_detections  # noqa: E402
from utils.core.significance import Summary, verdict_sentence, welch_interval  # noqa: E402
from utils.data.coco_json import largest_difference  # noqa: E402
from utils.engine.results import read_results  # noqa: E402

METRICS = (("map50", "mAP@0.5"), ("map", "mAP@0.5:0.95"))


def ours(group: Path, epochs: int) -> list[dict]:
    """Each finished seed's last epoch, and its seconds an epoch (start to results, with the
    evaluation after every epoch)."""
    runs = []
    for run in sorted(group.glob("seed*")):
        rows = read_results(run)
        if len(rows) == epochs:
            seconds = (run / "results.txt").stat().st_mtime - (run / "opt.yaml").stat().st_mtime
            runs.append({"seed": run.name, "map50": rows[-1].values["mAP@0.5"],
                         "map": rows[-1].values["mAP@0.5:0.95"], "s_per_epoch": seconds / epochs})
    return runs


def theirs(folder: Path, data: str) -> list[dict]:
    """Each finished seed's boxes scored by our evaluator, with pycocotools' largest
    difference, the package's own mAP and its training seconds an epoch."""
    runs = []
    for run in sorted(folder.glob("seed*")):
        if not (run / "info.json").exists():
            continue
        info = json.loads((run / "info.json").read_text())
        scored = score_detections.score_file(data, str(run / "val" / "predictions.json"), 1)
        result = scored.result
        worst = largest_difference(result.coco, score_detections.pycocotools_of(scored))
        runs.append({"seed": run.name, "map50": result.map50, "map": result.map50_95,
                     "own_map50": info.get("own_map50", info.get("map50")),
                     "own_map": info.get("own_map", info.get("map")), "pycocotools_diff": worst,
                     "s_per_epoch": info["train_s"] / info["epochs"]})
    return runs


def verdicts(a: list[dict], b: list[dict]) -> dict:
    """B (ours) - A (the package), Welch's 95% interval and compare_groups' words."""
    out = {}
    for key, label in METRICS:
        sa, sb = Summary.of([r[key] for r in a]), Summary.of([r[key] for r in b])
        diff, low, high = welch_interval(sa, sb)
        words = verdict_sentence(label, diff, low, high, True, "seed")[0] if low == low else None
        out[label] = {"a_mean": sa.mean, "b_mean": sb.mean, "diff": diff, "low": low,
                      "high": high, "verdict": words}
    return out


def plot(report: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, (key, label) in zip(axes, METRICS):
        for i, entry in enumerate(report.values()):
            for j, (who, color, name) in enumerate((
                    ("ultralytics", "tab:orange", "ultralytics 8.4.190 yolov3-tiny.yaml"),
                    ("ours", "tab:blue", "this trainer, cfg/yolov3-tiny.cfg"))):
                values = [r[key] for r in entry[who]]
                x = i + (j - 0.5) * 0.3
                ax.scatter([x] * len(values), values, color=color, s=30, zorder=3,
                           label=name if i == 0 else None)
                if values:
                    ax.hlines(sum(values) / len(values), x - 0.1, x + 0.1, color=color, lw=2)
        ax.set_xticks(range(len(report)), [e["title"] for e in report.values()], fontsize=8)
        ax.set_xlim(-0.5, len(report) - 0.5)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("yolov3-tiny from scratch, same images, 320 px, batch 16, same epochs; COCO "
                 "rules (our evaluator = pycocotools)\ndots: seeds, bars: their mean", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(spec_file: Path, out_json: Path, out_png: Path) -> dict:
    report = {}
    for name, spec in json.loads(spec_file.read_text()).items():
        a = theirs(Path(spec["ultralytics"]), spec["data"])
        b = ours(Path(spec["ours"]), spec["epochs"])
        report[name] = {"title": spec.get("title", name), "ours": b, "ultralytics": a,
                        "verdicts": verdicts(a, b)}
    out_json.write_text(json.dumps(report, indent=1))
    plot(report, out_png)
    return report


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
