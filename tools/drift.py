"""Compare training runs epoch by epoch: where they part, by how much, and what differed.

    python -m tools.drift runs/train/exp runs/train/exp2          # two run folders
    python -m tools.drift a/results.txt b/results.txt c/ --json   # any number, JSON out
    python -m tools.drift RUN_A RUN_B --tol 1e-6 --out drift/     # tolerance; where drift.png goes
    python -m tools.drift RUN_A RUN_B --noise runs/groups/base     # beside a seed group's range

--noise GROUP (run folders of one training under several seeds, the folder holding them, or a
seed-range reference FILE.json that ``tools.seed_range`` made from such a group) shades the
group's per-epoch range (min..max over its seeds) behind the runs in drift.png, and each
headline adds whether the runs' last-epoch difference in mAP@0.5 and mAP@0.5:0.95 is inside
that range's width, i.e. no larger than seeds alone have made it. The group must be the
compared runs' training under other seeds: a group of another schedule (epochs), data, model,
image size, batch size, hyperparameters or optimizer, by the settings each run recorded
(repro.yaml; a file by its digest where both recorded one), is refused (exit 2) with the
setting and both values; lesser differences (precision, a file that moved, the built-in set's
PNG files written by another encoder (the same pixel digest), the machine) are named as
warnings beside the verdict.

Exit status: 0 the runs agree within --tol (default 0: to the last bit, fingerprints included),
1 they differ, 2 an input could not be read.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from utils.base.errors import InputError, report_input_error
from utils.engine.loggers import log_verdict
from utils.engine.results import NOT_COMPARED
from utils.engine.run_folder import PER_SEED, Run, metric_value, setting_values
from utils.engine.seed_reference import load_group

METRICS = ("box", "obj", "cls", "total", "val_box", "val_obj", "val_cls", "P", "R", "F1",
           "mAP@0.5", "mAP@0.5:0.95")
NOISE_METRICS = ("mAP@0.5", "mAP@0.5:0.95")


def _differs(a: float, b: float, tol: float) -> bool:
    """NaN agrees with NaN only; a NaN against a number is a difference."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) != math.isnan(b)
    return abs(a - b) > tol


def _relative(diff: float, ref: float) -> float:
    return diff / abs(ref) * 100 if ref else (0.0 if diff == 0 else math.inf)


def compare_pair(a: Run, b: Run, tol: float) -> dict:
    """Everything the report says about run b against run a."""
    epochs = sorted(set(a.rows) & set(b.rows))
    per_epoch, first = [], None
    identical_through = None
    for e in epochs:
        ra, rb = a.rows[e], b.rows[e]
        metrics = {}
        for m in METRICS:
            va, vb = ra.values.get(m, math.nan), rb.values.get(m, math.nan)
            diff = vb - va
            metrics[m] = {"a": va, "b": vb, "abs": diff, "rel_percent": _relative(diff, va)}
        fingerprints = (None if ra.fingerprint is None or rb.fingerprint is None
                        else ra.fingerprint == rb.fingerprint)
        numeric = [k for k in ra.values if k not in NOT_COMPARED and k in rb.values]
        differing = [k for k in numeric if _differs(ra.values[k], rb.values[k], tol)]
        if tol == 0 and fingerprints is False:
            differing.append("fingerprint")
        per_epoch.append({"epoch": e, "metrics": metrics, "fingerprints_match": fingerprints,
                          "differing": differing})
        if differing and first is None:
            k = differing[0]
            va = ra.fingerprint if k == "fingerprint" else ra.values[k]
            vb = rb.fingerprint if k == "fingerprint" else rb.values[k]
            first = {"epoch": e, "metric": k, "a": va, "b": vb}
        if first is None:
            identical_through = e
    largest = {}
    for m in METRICS:
        diffs = [(abs(p["metrics"][m]["abs"]), p) for p in per_epoch
                 if not math.isnan(p["metrics"][m]["abs"])]
        if not diffs:
            continue
        worst, where = max(diffs, key=lambda t: t[0])
        last = per_epoch[-1]["metrics"][m]
        largest[m] = {"max_abs": worst, "epoch": where["epoch"],
                      "max_rel_percent": abs(where["metrics"][m]["rel_percent"]),
                      "last_abs": abs(last["abs"]), "last_rel_percent": abs(last["rel_percent"])}
    missing = sorted(set(a.rows) ^ set(b.rows))
    if first is None and missing:
        shorter = "b" if set(a.rows) - set(b.rows) else "a"
        headline = (f"run {shorter} lacks epochs {_epoch_ranges(missing)} that the other has: "
                    f"the runs agree through epoch {identical_through}, but not to the end"
                    if epochs else "no epoch in common")
    elif first is None:
        headline = (f"identical{' within ' + str(tol) if tol else ' to the last bit'} through "
                    f"epoch {identical_through}" if epochs else "no epoch in common")
    else:
        headline = f"first difference at epoch {first['epoch']}: {first['metric']} " \
                   f"{first['a']} vs {first['b']}"
    return {"a": a.name, "b": b.name, "epochs_compared": len(epochs), "headline": headline,
            "agree": first is None and bool(epochs) and not missing, "first_difference": first,
            "missing_epochs": missing,
            "identical_through": identical_through, "largest": largest, "per_epoch": per_epoch,
            "settings_differences": settings_differences(a, b)}


def _epoch_ranges(epochs: list[int]) -> str:
    """[3, 4, 5, 9] -> '3..5, 9'."""
    groups: list[list[int]] = []
    for e in epochs:
        if groups and e == groups[-1][-1] + 1:
            groups[-1].append(e)
        else:
            groups.append([e])
    return ", ".join(f"{g[0]}..{g[-1]}" if len(g) > 1 else str(g[0]) for g in groups)


def settings_differences(a: Run, b: Run) -> list[dict]:
    out = []
    for run in (a, b):
        for change in run.changes_within:
            out.append({"setting": f"within {run.name}", "a": None, "b": None,
                        "warning": f"resumed with other settings: {change}"})
    if a.epochs != b.epochs:
        out.append({"setting": "epochs", "a": a.epochs, "b": b.epochs,
                    "warning": "different epoch counts: the cosine schedule differs from the "
                               "first epoch, so the runs are not comparable step for step"})
    thread_free = all(isinstance(r.settings.get("options.portable_recipe"), int)
                      and r.settings["options.portable_recipe"] >= THREAD_FREE_RECIPE
                      for r in (a, b))
    for key in sorted(set(a.settings) | set(b.settings), key=_likelihood):
        if key.startswith("options.") and key.split(".", 1)[1] in ("name", "resume", "quiet"):
            continue
        if thread_free and key in THREAD_KEYS:  # not a cause: see THREAD_FREE_RECIPE
            continue
        va, vb = a.settings.get(key), b.settings.get(key)
        if va != vb:
            out.append({"setting": key, "a": va, "b": vb})
    return out


# Two --portable runs of this recipe or later have the same bits at any thread count
# (docs/threads.md): their thread counts are not listed as a cause.
THREAD_FREE_RECIPE = 2
THREAD_KEYS = ("environment.torch_threads", "environment.machine.kernels.openmp_threads",
               "options.threads")

# What parts two runs, most likely first: the device, the precision, the thread count, the
# kernels' instruction set (and what steers it), then library versions; the rest after.
LIKELY_CAUSES = (
    ("environment.device", "environment.machine.gpu."),
    ("precision", "options.amp", "options.portable"),
    (*THREAD_KEYS, "world_size", "environment.nccl_variables."),
    ("environment.machine.kernels.cpu_capability", "environment.machine.kernels.mkldnn_enabled",
     "environment.machine.variables.", "environment.machine.cpu.", "environment.cudnn_",
     "environment.matmul_allow_tf32", "environment.deterministic_algorithms"),
    ("environment.torch", "environment.cuda", "environment.cudnn",
     "environment.machine.kernels.", "environment.numpy", "environment.opencv",
     "environment.python"),
)


def _likelihood(key: str) -> tuple[int, str]:
    for rank, prefixes in enumerate(LIKELY_CAUSES):
        if any(key == p or (p.endswith((".", "_")) and key.startswith(p)) or
               key.startswith(p + ".") for p in prefixes):
            return rank, key
    return len(LIKELY_CAUSES), key


def spread(runs: list[Run]) -> list[dict]:
    """Per epoch and metric: min, max and standard deviation over the runs."""
    epochs = sorted(set.intersection(*(set(r.rows) for r in runs)))
    out = []
    for e in epochs:
        entry = {"epoch": e}
        for m in METRICS:
            values = np.array([r.rows[e].values.get(m, math.nan) for r in runs])
            entry[m] = {"min": float(np.min(values)), "max": float(np.max(values)),
                        "std": float(np.std(values))}
        out.append(entry)
    return out


def seed_range(group: list[Run]) -> dict[int, dict]:
    """Per epoch and metric, the group's min, max and count of evaluated values (epochs not
    evaluated left out, never read as 0)."""
    out: dict[int, dict] = {}
    for e in sorted(set().union(*(r.rows for r in group))):
        entry = {}
        for m in METRICS:
            values = [v for r in group if e in r.rows
                      for v in [metric_value(r, e, m)] if math.isfinite(v)]
            if values:
                entry[m] = {"min": min(values), "max": max(values), "n": len(values)}
        out[e] = entry
    return out


# What makes another training, for --noise, and what each records: a seed range of another
# schedule, data, model, image size, batch size or hyperparameters is that training's noise,
# not the compared runs'. "epochs" is the schedule results.txt records (options.epochs repeats
# it); the digests record the files' contents.
ANOTHER_TRAINING = {"epochs": "the schedule", "digests.cfg": "the model",
                    "digests.train": "the data", "digests.val": "the data",
                    "options.single_cls": "the data's classes",
                    "options.img_size": "the image size", "options.batch_size": "the batch size",
                    "digests.hyp": "the hyperparameters", "options.adam": "the optimizer"}
# The file options whose contents those digests record: where every run recorded the digests,
# a path that differs is the same file moved (a warning); without them, the path decides.
FILE_OPTIONS = {"options.cfg": ("digests.cfg", "the model"),
                "options.data": ("digests.train", "the data"),
                "options.hyp": ("digests.hyp", "the hyperparameters")}
NOT_COMPARED_WITH_NOISE = PER_SEED + ("options.epochs",)


def _values(runs: list[Run], key: str) -> list[str]:
    if key == "epochs":
        return sorted({repr(r.epochs) for r in runs})
    return setting_values(runs, key)


def _recorded(runs: list[Run], key: str) -> bool:
    return key == "epochs" or all(key in r.settings for r in runs)


def _same_built_in_pixels(key: str, runs: list[Run]) -> bool:
    """Whether a difference in the data files' digests is only their PNG bytes: every run
    trained on the built-in set and recorded one pixel digest for it (``shapes_digest``)."""
    digests = {r.settings.get("shapes_digest") for r in runs}
    return key in ("digests.train", "digests.val") and len(digests) == 1 and None not in digests


def _another_training(key: str, runs: list[Run]) -> str | None:
    """What a difference in ``key`` between these runs changes when it makes another training
    (the schedule, the data, ...); None for a lesser difference or one not recorded by all."""
    if _same_built_in_pixels(key, runs):
        return None
    if key in FILE_OPTIONS:
        digest, what = FILE_OPTIONS[key]
        return None if _recorded(runs, digest) or not _recorded(runs, key) else what
    return ANOTHER_TRAINING.get(key) if _recorded(runs, key) else None


def _why_lesser(key: str, runs: list[Run]) -> str:
    if _same_built_in_pixels(key, runs):
        return (" (the same built-in set by its pixel digest, shapes_digest: PNG files another "
                "encoder wrote)")
    if key in FILE_OPTIONS and _recorded(runs, FILE_OPTIONS[key][0]):
        return " (the same contents by their digests: a file that moved)"
    if not _recorded(runs, key):
        return " (not recorded by every run: not checked)"
    return ""


def noise_group_differences(run: Run, group: list[Run]) -> tuple[list[str], list[str]]:
    """How ``group`` was trained otherwise than ``run``, by what each recorded: (differences
    that make another training, lesser ones), each naming the setting and both values. The
    machine's settings (environment.*) are one lesser difference together."""
    unrecorded = [r.name for r in [run, *group] if not r.settings]
    keys = sorted({k for r in [run, *group] for k in r.settings}
                  - set(NOT_COMPARED_WITH_NOISE)) + ["epochs"]
    another, lesser, machine = [], [], []
    if unrecorded:  # one line for them, not one per setting the others recorded
        keys = ["epochs"]
        lesser.append(f"no settings recorded (repro.yaml) by {', '.join(unrecorded)}: only "
                      "the schedule (epochs) was checked")
    for key in keys:
        ours, theirs = _values([run], key), _values(group, key)
        if ours == theirs:
            continue
        if key.startswith("environment."):
            machine.append(key)
            continue
        text = f"{key} {', '.join(theirs)} in the group, {', '.join(ours)} in {run.name}"
        what = _another_training(key, [run, *group])
        if what:
            another.append(f"{text} ({what})")
        else:
            lesser.append(text + _why_lesser(key, [run, *group]))
    if machine:
        lesser.append(f"the group ran on another machine or software than {run.name} "
                      f"({', '.join(machine)} differ)")
    return another, lesser


def check_noise_group(runs: list[Run], group: list[Run], name: str) -> list[str]:
    """Refuse a group that is not the compared runs' training under other seeds; returns the
    lesser differences, for the report's warnings."""
    another, lesser = [], []
    for run in runs:
        refused, warned = noise_group_differences(run, group)
        another += refused
        lesser += [w for w in warned if w not in lesser]
    if another:
        raise InputError(f"--noise {name}: not a seed range of the compared runs' training: "
                         + "; ".join(another) + ". Give a group trained like them (the same "
                         "schedule, data, model, image size, batch size, hyperparameters and "
                         "optimizer), under other seeds")
    return lesser


def noise_verdict(pair: dict, ranges: dict[int, dict], group: str) -> dict:
    """Whether the pair's last-epoch difference of each of NOISE_METRICS is inside the
    group's seed range there (no larger than its max - min), with the sentence for it."""
    last = pair["per_epoch"][-1] if pair["per_epoch"] else None
    verdicts, words = {}, []
    for m in NOISE_METRICS:
        seeds = ranges.get(last["epoch"], {}).get(m) if last else None
        diff = last["metrics"][m]["abs"] if last else math.nan
        if last and math.isnan(diff):
            verdicts[m] = None
            words.append(f"{m}: not evaluated at the runs' last epoch {last['epoch']}, "
                         "nothing to hold against the seed range")
            continue
        if seeds is None or seeds["n"] < 2:
            verdicts[m] = None
            words.append(f"{m}: no seed range of {group} to hold it against"
                         + (f" at epoch {last['epoch']}" if last else ""))
            continue
        width = seeds["max"] - seeds["min"]
        verdicts[m] = abs(diff) <= width
        where = "inside" if verdicts[m] else "outside"
        words.append(f"{m} differs by {diff:+.3g} at epoch {last['epoch']}, {where} the seed "
                     f"range of {group} ({width:.3g} from lowest to highest of {seeds['n']} "
                     "seeds)")
    return {"inside": verdicts, "sentence": "; ".join(words)}


def plot_drift(runs: list[Run], out: Path, ranges: dict[int, dict] | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("total", "val_box", "val_obj", "val_cls", "P", "R", "mAP@0.5", "mAP@0.5:0.95")
    fig, axes = plt.subplots(2, len(shown), figsize=(3.2 * len(shown), 6.5), tight_layout=True)
    reference = runs[0]
    for k, m in enumerate(shown):
        for i, run in enumerate(runs):
            epochs = sorted(run.rows)
            axes[0, k].plot(epochs, [run.rows[e].values.get(m, math.nan) for e in epochs],
                            marker=".", label=f"run {i}")
            if i:
                common = sorted(set(run.rows) & set(reference.rows))
                axes[1, k].plot(common, [run.rows[e].values.get(m, math.nan)
                                         - reference.rows[e].values.get(m, math.nan)
                                         for e in common], marker=".", label=f"run {i} - run 0")
        band = [(e, v[m]) for e, v in (ranges or {}).items() if m in v]
        if band:
            epochs = [e for e, _ in band]
            axes[0, k].fill_between(epochs, [b["min"] for _, b in band],
                                    [b["max"] for _, b in band], color="grey", alpha=0.25,
                                    label="seed range (--noise)", zorder=0)
            # the difference two seeds can make: the range's width, either way
            width = np.array([b["max"] - b["min"] for _, b in band])
            axes[1, k].fill_between(epochs, -width, width, color="grey", alpha=0.25,
                                    label="+/- seed range width", zorder=0)
        axes[0, k].set_title(m)
        axes[1, k].set_title(f"{m}: difference")
        axes[1, k].axhline(0, color="grey", lw=0.5)
        axes[1, k].set_xlabel("epoch")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def format_report(report: dict) -> str:
    lines = []
    for i, pair in enumerate(report["pairs"]):
        lines.append(f"run 0: {pair['a']}\nrun {i + 1}: {pair['b']}")
        lines.append(f"=> {pair['headline']}")
        if "noise" in pair:
            lines.append(f"=> against seed noise: {pair['noise']['sentence']}")
        lines.append(f"{'epoch':>5} {'metric':>13} {'run 0':>14} {'run ' + str(i + 1):>14} "
                     f"{'abs diff':>11} {'rel %':>9}  fingerprints")
        for p in pair["per_epoch"]:
            match = {True: "match", False: "DIFFER", None: "n/a"}[p["fingerprints_match"]]
            for j, (m, v) in enumerate(p["metrics"].items()):
                lines.append(f"{p['epoch'] if j == 0 else '':>5} {m:>13} {v['a']:>14.8g} "
                             f"{v['b']:>14.8g} {v['abs']:>11.3g} {v['rel_percent']:>9.3g}"
                             f"  {match if j == 0 else ''}")
        lines.append("largest difference of each metric (whole run; last epoch):")
        for m, v in pair["largest"].items():
            lines.append(f"  {m:>13}: {v['max_abs']:.3g} ({v['max_rel_percent']:.3g}%) at epoch "
                         f"{v['epoch']}; last epoch {v['last_abs']:.3g} "
                         f"({v['last_rel_percent']:.3g}%)")
        if pair["settings_differences"]:
            lines.append("recorded settings that differ: each can part two runs, the most "
                         "likely first (device, precision, threads, kernel ISA, versions):")
            for d in pair["settings_differences"]:
                values = ("" if d["setting"].startswith("within ")
                          else f" {d['a']!r} vs {d['b']!r}")
                lines.append(f"  {d['setting']}:{values}"
                             + (f"  WARNING: {d['warning']}" if "warning" in d else ""))
        else:
            lines.append("recorded settings: no difference")
        lines.append("")
    lines += [f"WARNING: --noise: {w}" for w in report.get("noise", {}).get("warnings", [])]
    if report.get("spread"):
        lines.append("spread over all runs (max - min; std) per epoch:")
        for entry in report["spread"]:
            cells = [f"{m} {entry[m]['max'] - entry[m]['min']:.3g};{entry[m]['std']:.3g}"
                     for m in ("total", "mAP@0.5", "mAP@0.5:0.95")]
            lines.append(f"  epoch {entry['epoch']}: " + ", ".join(cells))
    return "\n".join(lines)


def build_report(specs: list[str], tol: float, noise: list[str] | None = None
                 ) -> tuple[dict, list[Run]]:
    runs = [Run(s) for s in specs]
    pairs = [compare_pair(runs[0], r, tol) for r in runs[1:]]
    report = {"tolerance": tol, "agree": all(p["agree"] for p in pairs), "pairs": pairs}
    if len(runs) >= 3:
        report["spread"] = spread(runs)
    if noise:
        group = load_group(noise)
        warnings = check_noise_group(runs, group, " ".join(noise))
        ranges = seed_range(group)
        name = noise[0] if len(noise) == 1 else f"the {len(group)} --noise runs"
        report["noise"] = {"group": [r.name for r in group], "per_epoch": ranges,
                           "warnings": warnings}
        for pair in pairs:
            pair["noise"] = noise_verdict(pair, ranges, name)
    return report, runs


def json_safe(value):
    """Strict JSON has no NaN or Infinity: write those as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Compare training runs epoch by epoch.")
    parser.add_argument("runs", nargs="+", help="run folders or results.txt files (2 or more)")
    parser.add_argument("--tol", type=float, default=0.0,
                        help="absolute tolerance; 0 = bit-identical, fingerprints included")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", default=None, help="folder for drift.png (default: current)")
    parser.add_argument("--mlflow-run", default=None, metavar="RUN_ID",
                        help="also log the verdict and the report to this MLflow run "
                             "(MLFLOW_TRACKING_URI, else the local mlruns/ folder)")
    parser.add_argument("--noise", nargs="+", default=None, metavar="GROUP",
                        help="a seed group (its run folders, the folder holding them, or a "
                             "seed-range reference .json of tools.seed_range): its "
                             "per-epoch range shaded in drift.png, and whether the last-epoch "
                             "difference is inside it")
    return parser


def main(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        print("error: give at least two runs to compare", file=sys.stderr)
        return 2
    try:
        report, runs = build_report(args.runs, args.tol, args.noise)
    except InputError as err:
        return report_input_error(err)
    out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    plot_drift(runs, out / "drift.png", report.get("noise", {}).get("per_epoch"))
    report["plot"] = str(out / "drift.png")
    print_report(report, args.json, format_report)
    status = 0 if report["agree"] else 1
    log_to_mlflow(args.mlflow_run, "drift", status, report, format_report)
    return status


def log_to_mlflow(run_id: str | None, tool: str, status: int, report: dict, formatter) -> None:
    """--mlflow-run: the verdict and the report on that MLflow run, said on stderr."""
    if run_id:
        report_json = json.dumps(json_safe(report), indent=1, default=str, allow_nan=False)
        print(log_verdict(run_id, tool, status, report_json, formatter(report)),
              file=sys.stderr)


def print_report(report: dict, as_json: bool, formatter) -> None:
    """The report as strict JSON, or as text from ``formatter`` followed by where its plot is."""
    if as_json:
        print(json.dumps(json_safe(report), indent=1, default=str, allow_nan=False))
    else:
        print(formatter(report))
        if report.get("plot"):
            print(f"plot: {report['plot']}")


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
