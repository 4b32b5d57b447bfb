"""Is a difference real? Compare two groups of runs, each the same training under different
seeds: per metric, each group's mean, spread and range, the difference of the means with a 95%
interval, and a verdict.

    python -m scripts.seed_group --seeds 3 --out runs/groups/base                # group A
    python -m scripts.seed_group --seeds 3 --out runs/groups/adam -- --adam        # group B
    python -m utils.compare_groups --a runs/groups/base --b runs/groups/adam
    python -m utils.compare_groups --a runs/x/seed0 runs/x/seed1 --b runs/y/* --json

A group is given as run folders (or results.txt files), or as one folder holding them.

The groups are compared at the last epoch every run evaluated: each run's last epoch when they
all end there; otherwise the report names the epoch (a run still training, killed or stopped
by --stop-after is compared where it stopped). An epoch never evaluated is left out, never read
as a score of 0.

The interval is Welch's t interval for a difference of means: with 3 to 5 seeds a bootstrap over
seeds has only a handful of distinct resamples and comes out too narrow, while Welch's t widens
the interval for the small sample (its degrees of freedom) and does not assume both groups
spread alike. Its caveat: it assumes seed-to-seed variation roughly normal; with 3 seeds the
interval is wide, and "within seed noise" means "not shown", not "no effect".

Exit status: 0 no difference beyond seed noise, 1 a difference in a verdict metric, 2 an input
that cannot be read, or a group too small (fewer than 2 finite values) for a verdict.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from utils.drift import METRICS, Run, print_report
from utils.errors import InputError, report_input_error

# Settings that differ between seeds of one training by design.
PER_SEED = ("options.seed", "options.name", "options.project", "options.resume",
            "options.quiet", "initial_fingerprint")
HIGHER_IS_BETTER = {"P", "R", "F1", "mAP@0.5", "mAP@0.5:0.95"}


def expand_group(specs: list[str]) -> list[str]:
    """Run folders or results.txt files; a folder without results.txt stands for the run
    folders inside it."""
    out = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir() and not (path / "results.txt").is_file():
            inner = sorted(str(p) for p in path.iterdir() if (p / "results.txt").is_file())
            if not inner:
                raise InputError("no run folders (with a results.txt) in this folder", path)
            out += inner
        else:
            out.append(spec)
    return out


@dataclass
class Summary:
    """One metric of one group at one point: n finite values, mean, sample std, min, max."""
    n: int
    mean: float
    std: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        v = np.array([x for x in values if math.isfinite(x)], dtype=float)
        if not len(v):
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
        return cls(len(v), float(v.mean()), std, float(v.min()), float(v.max()))


def welch_interval(a: Summary, b: Summary, level: float = 0.95) -> tuple[float, float, float]:
    """(difference b - a, low, high) of the means at ``level``, by Welch's t; NaN bounds when a
    group has fewer than 2 values. Two groups without any spread give a zero-width interval."""
    diff = b.mean - a.mean
    if a.n < 2 or b.n < 2:
        return diff, math.nan, math.nan
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return diff, diff - half, diff + half


def verdict(metric: str, a: Summary, b: Summary) -> tuple[str, bool | None]:
    """The sentence for one metric at the end, and whether the groups differ (None: too few
    values to tell)."""
    diff, low, high = welch_interval(a, b)
    if math.isnan(low):
        small = "A" if a.n < 2 else "B"
        return (f"{metric}: cannot tell: group {small} has {min(a.n, b.n)} finite value(s); "
                "a spread needs 2 or more seeds", None)
    if low > 0 or high < 0:
        better = "B" if (diff > 0) == (metric in HIGHER_IS_BETTER) else "A"
        word = "beats" if better == "B" else "is worse than"
        return (f"{metric}: B {word} A by {diff:+.4g}, 95% interval {low:+.4g} to {high:+.4g}: "
                "larger than the seed spread", True)
    return (f"{metric}: within seed noise: difference {diff:+.4g}, 95% interval {low:+.4g} to "
            f"{high:+.4g}; the groups' spreads (std) are {a.std:.3g} and {b.std:.3g}", False)


def settings_report(group_a: list[Run], group_b: list[Run]) -> tuple[list[dict], list[str]]:
    """Settings whose values differ between the groups, and warnings for runs within a group
    that differ in anything but the seed."""
    def values(group, key):
        return sorted({repr(run.settings.get(key)) for run in group})

    keys = sorted({k for run in group_a + group_b for k in run.settings} - set(PER_SEED))
    between = [{"setting": k, "a": values(group_a, k), "b": values(group_b, k)}
               for k in keys if values(group_a, k) != values(group_b, k)]
    warnings = []
    for label, group in (("A", group_a), ("B", group_b)):
        for k in keys:
            if len(values(group, k)) > 1:
                warnings.append(f"group {label}: runs differ in {k} ({', '.join(values(group, k))})"
                                ", not only in the seed")
        lengths = sorted({len(run.rows) for run in group})
        if len(lengths) > 1:
            warnings.append(f"group {label}: runs have different numbers of epochs {lengths}")
    return between, warnings


EVALUATED = ("P", "R", "mAP@0.5", "F1", "val_box", "val_obj", "val_cls", "mAP@0.5:0.95")


def metric_value(run: Run, epoch: int, metric: str) -> float:
    """One metric of one epoch; NaN where the epoch was not evaluated. Runs from before NaN was
    written for such epochs (--notest, the legs before a crash) have all evaluation columns
    0.0, which no evaluation gives (the validation losses of any image are above 0): read as
    NaN too, never as a measured 0."""
    values = run.rows[epoch].values
    if metric in EVALUATED and all(values.get(m) == 0.0 for m in EVALUATED):
        return math.nan
    return values.get(metric, math.nan)


def evaluated_epochs(run: Run) -> set[int]:
    """The epochs at which the run was evaluated (any evaluation column not NaN)."""
    return {e for e in run.rows
            if any(not math.isnan(metric_value(run, e, m)) for m in EVALUATED)}


def common_epoch(group_a: list[Run], group_b: list[Run]) -> tuple[int, str | None]:
    """The epoch to compare at: the last one every run evaluated, with a note when that is not
    every run's last epoch. Refused when no epoch was evaluated by all runs."""
    runs = group_a + group_b
    common = set.intersection(*(evaluated_epochs(r) for r in runs))
    ends = sorted({max(r.rows) for r in runs})
    if not common:
        raise InputError("no epoch that every run evaluated (--notest evaluates only the last "
                         f"epoch; the runs end at epochs {ends}): nothing to compare at")
    epoch = max(common)
    if ends == [epoch]:
        return epoch, None
    return epoch, (f"compared at epoch {epoch}, the last epoch every run evaluated; the runs "
                   f"end at epochs {ends}: a run that stopped early (still running, killed, "
                   "--stop-after) is compared with the others where it stopped, not with "
                   "their ends")


def _non_finite_warnings(groups: dict[str, list[Run]], epoch: int) -> list[str]:
    warnings = []
    for label, group in groups.items():
        for run in group:
            for m in METRICS:
                value = metric_value(run, epoch, m)
                if not math.isfinite(value):
                    shown = "NaN" if math.isnan(value) else f"{value}"
                    warnings.append(f"group {label}: {run.name} has {m} {shown} at epoch "
                                    f"{epoch}: left out of {m}")
    return warnings


def compare(specs_a: list[str], specs_b: list[str], metrics: list[str]) -> dict:
    group_a = [Run(s) for s in expand_group(specs_a)]
    group_b = [Run(s) for s in expand_group(specs_b)]
    epoch, note = common_epoch(group_a, group_b)
    report = {"a": [r.name for r in group_a], "b": [r.name for r in group_b],
              "method": "Welch's t interval, 95%", "epoch": epoch, "epoch_note": note,
              "end": {}, "per_epoch": [], "verdicts": []}
    warnings = ([note] if note else []) + _non_finite_warnings({"A": group_a, "B": group_b},
                                                               epoch)
    for m in METRICS:
        a = Summary.of([metric_value(r, epoch, m) for r in group_a])
        b = Summary.of([metric_value(r, epoch, m) for r in group_b])
        diff, low, high = welch_interval(a, b)
        report["end"][m] = {"a": a.__dict__, "b": b.__dict__, "difference": diff,
                            "interval": [low, high]}
    epochs = sorted(set().union(*(r.rows for r in group_a + group_b)))
    for e in epochs:
        entry = {"epoch": e}
        for m in METRICS:
            a = Summary.of([metric_value(r, e, m) for r in group_a if e in r.rows])
            b = Summary.of([metric_value(r, e, m) for r in group_b if e in r.rows])
            entry[m] = {"a": a.__dict__, "b": b.__dict__}
        report["per_epoch"].append(entry)
    differ = []
    for m in metrics:
        end = report["end"][m]
        sentence, differs = verdict(m, Summary(**end["a"]), Summary(**end["b"]))
        report["verdicts"].append({"metric": m, "verdict": sentence, "differs": differs})
        differ.append(differs)
    report["settings_between"], more = settings_report(group_a, group_b)
    report["warnings"] = warnings + more
    report["exit"] = 2 if None in differ else (1 if any(differ) else 0)
    return report


def format_report(report: dict) -> str:
    where = (f"at epoch {report['epoch']} (the last epoch every run evaluated)"
             if report["epoch_note"] else "at the end (each run's last epoch)")
    lines = [f"group A ({len(report['a'])} runs): {', '.join(report['a'])}",
             f"group B ({len(report['b'])} runs): {', '.join(report['b'])}", "",
             f"{where}; difference B - A, {report['method']}:",
             f"{'metric':>13} {'A mean':>10} {'A std':>9} {'A range':>19} {'B mean':>10} "
             f"{'B std':>9} {'B range':>19} {'B - A':>10} {'95% interval':>21}"]
    for m, v in report["end"].items():
        a, b = v["a"], v["b"]
        low, high = v["interval"]
        lines.append(f"{m:>13} {a['mean']:>10.4g} {a['std']:>9.3g} "
                     f"{a['low']:>9.4g}..{a['high']:<9.4g} {b['mean']:>10.4g} {b['std']:>9.3g} "
                     f"{b['low']:>9.4g}..{b['high']:<9.4g} {v['difference']:>+10.4g} "
                     f"{low:>+10.4g}..{high:<+10.4g}")
    lines += ["", "per epoch, mAP@0.5 mean (std) of A and B:"]
    for entry in report["per_epoch"]:
        cells = [f"{label} {s['mean']:.4f} ({s['std']:.3g}, n={s['n']})" if s["n"]
                 else f"{label} not evaluated"
                 for label, s in (("A", entry["mAP@0.5"]["a"]), ("B", entry["mAP@0.5"]["b"]))]
        lines.append(f"  epoch {entry['epoch']:>3}: " + "  ".join(cells))
    lines += ["", "settings that differ between the groups:"]
    lines += [f"  {d['setting']}: A {', '.join(d['a'])}; B {', '.join(d['b'])}"
              for d in report["settings_between"]] or ["  none recorded"]
    lines += [f"WARNING: {w}" for w in report["warnings"]]
    lines += ["", "verdict:"] + [f"  {v['verdict']}" for v in report["verdicts"]]
    return "\n".join(lines)


def plot_groups(report: dict, out: Path) -> None:
    """Mean curves of both groups with their min..max range shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("total", "val_obj", "mAP@0.5", "mAP@0.5:0.95")
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.6), tight_layout=True)
    epochs = [e["epoch"] for e in report["per_epoch"]]
    for ax, m in zip(axes, shown):
        for label, color in (("a", "tab:blue"), ("b", "tab:orange")):
            values = [e[m][label] for e in report["per_epoch"]]
            ax.plot(epochs, [v["mean"] for v in values], color=color,
                    label=f"{label.upper()} mean ({len(report[label])} runs)")
            ax.fill_between(epochs, [v["low"] for v in values], [v["high"] for v in values],
                            color=color, alpha=0.25, label=f"{label.upper()} range")
        ax.set_title(m)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Is B better than A beyond seed noise?")
    parser.add_argument("--a", nargs="+", required=True, help="runs of group A (or one folder)")
    parser.add_argument("--b", nargs="+", required=True, help="runs of group B (or one folder)")
    parser.add_argument("--metric", action="append", choices=METRICS, default=None,
                        help="metric for the verdict (repeatable; default mAP@0.5 and "
                             "mAP@0.5:0.95)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", default=None, help="folder for groups.png (default: current)")
    return parser


def main(args: argparse.Namespace) -> int:
    try:
        report = compare(args.a, args.b, args.metric or ["mAP@0.5", "mAP@0.5:0.95"])
    except InputError as err:
        return report_input_error(err)
    out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    plot_groups(report, out / "groups.png")
    report["plot"] = str(out / "groups.png")
    print_report(report, args.json, format_report)
    return report["exit"]


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
