"""Is a difference real? Compare two groups of runs, each the same training under different
seeds: per metric, each group's mean, spread and range, the difference of the means with a 95%
interval, and a verdict; or, before training, how many seeds a difference needs.

    python -m tools.seed_group --seeds 3 --out runs/groups/base                # group A
    python -m tools.seed_group --seeds 3 --out runs/groups/adam -- --adam        # group B
    python -m tools.compare_groups --a runs/groups/base --b runs/groups/adam
    python -m tools.compare_groups --a runs/x/seed0 runs/x/seed1 --b runs/y/* --json
    python -m tools.compare_groups --plan --effect 0.01 --a runs/groups/base  # seeds needed

--plan's t test count is searched up to 100,000 seeds per group; past that the output says
"more than 100000 seeds per group" and gives the normal approximation's figure instead.

A group is given as run folders (or results.txt files), or as one folder holding them.

The groups are compared at the last epoch every run evaluated: each run's last epoch when they
all end there; otherwise the report names the epoch (a run still training, killed or stopped
by --stop-after is compared where it stopped). An epoch never evaluated is left out, never read
as a score of 0.

The interval is Welch's t interval for a difference of means: with 3 to 5 seeds a bootstrap over
seeds has only a handful of distinct resamples and comes out too narrow, while Welch's t widens
the interval for the small sample (its degrees of freedom) and does not assume both groups
spread alike. Its caveat: it assumes seed-to-seed variation roughly normal; with 3 seeds the
interval is wide, and "within seed noise" means "not shown", not "no effect": the verdict then
says the smallest difference these seeds could have shown (at 80% power, 5% level).

When every run of A has its twin in B (the same recorded seed: the same initial weights and
sample order), the paired t interval of the twins' differences stands beside Welch's, and the
report says which is tighter on these runs; the verdict reads the paired one, since the design
is paired (picking the tighter after seeing both would overstate the evidence). --unpaired
reads Welch's alone.

Exit status: 0 no difference beyond seed noise, 1 a difference in a verdict metric, 2 an input
that cannot be read, or a group too small (fewer than 2 finite values) for a verdict.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from tools.drift import METRICS, log_to_mlflow, print_report
from utils.base.errors import InputError, report_input_error
from utils.core.significance import (
    ALPHA,
    POWER,
    Summary,
    paired_detectable,
    paired_interval,
    seeds_needed,
    t_test_power,
    verdict_sentence,
    welch_detectable,
    welch_interval,
)
from utils.engine.run_folder import (
    Run,
    common_epoch,
    expand_group,
    metric_value,
    setting_keys,
    setting_values,
    settings_between,
    twins,
)

HIGHER_IS_BETTER = {"P", "R", "F1", "mAP@0.5", "mAP@0.5:0.95"}
POWER_WORDS = f"at {POWER:.0%} power and a two-sided {ALPHA:.0%} level"
# Where --plan's search for the t test's seed count stops; past it the output says so and gives
# the normal approximation's figure.
SEED_SEARCH_LIMIT = 100_000


def settings_report(group_a: list[Run], group_b: list[Run]) -> tuple[list[dict], list[str]]:
    """Settings whose values differ between the groups, and warnings for runs within a group
    that differ in anything but the seed."""
    between = settings_between(group_a, group_b)
    warnings = []
    for label, group in (("A", group_a), ("B", group_b)):
        for k in setting_keys(group_a + group_b):
            values = setting_values(group, k)
            if len(values) > 1:
                warnings.append(f"group {label}: runs differ in {k} ({', '.join(values)}), "
                                "not only in the seed")
        lengths = sorted({len(run.rows) for run in group})
        if len(lengths) > 1:
            warnings.append(f"group {label}: runs have different numbers of epochs {lengths}")
    return between, warnings


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


def paired_entry(pairs: list[tuple[Run, Run]], epoch: int, metric: str) -> dict:
    """The twins' differences B - A of one metric: their mean, spread and paired t interval,
    and the twins' correlation (what pairing cancels); pairs with a non-finite value left out."""
    values = np.array([(metric_value(a, epoch, metric), metric_value(b, epoch, metric))
                       for a, b in pairs]).reshape(-1, 2)
    values = values[np.isfinite(values).all(1)]
    differences = (values[:, 1] - values[:, 0]).tolist()
    mean, low, high = paired_interval(differences)
    spread = Summary.of(differences)
    correlation = (float(stats.pearsonr(values[:, 0], values[:, 1]).statistic)
                   if len(values) > 2 and np.ptp(values, 0).all() else math.nan)
    return {"n": len(differences), "difference": mean, "std": spread.std,
            "interval": [low, high], "twin_correlation": correlation,
            "detectable": paired_detectable(differences)}


def verdict(metric: str, end: dict, paired: bool) -> tuple[str, bool | None]:
    """The sentence for one metric at the end, and whether the groups differ (None: too few
    values to tell). ``paired``: read the twins' paired interval, not Welch's."""
    a, b = Summary(**end["a"]), Summary(**end["b"])
    source = end["paired"] if paired else end
    low, high = source["interval"]
    if math.isnan(low):
        if paired:
            return (f"{metric}: cannot tell: {source['n']} pair(s) of twins with finite "
                    "values; a spread needs 2 or more", None)
        small = "A" if a.n < 2 else "B"
        return (f"{metric}: cannot tell: group {small} has {min(a.n, b.n)} finite value(s); "
                "a spread needs 2 or more seeds", None)
    sentence, differs = verdict_sentence(metric, source["difference"], low, high,
                                         metric in HIGHER_IS_BETTER, "seed")
    if not differs:
        sentence += f"; the groups' spreads (std) are {a.std:.3g} and {b.std:.3g}"
        if paired:
            sentence += f", their twins' differences' {source['std']:.3g}"
        sentence += (f"; {POWER_WORDS} these seeds could have shown a difference of "
                     f"{source['detectable']:.3g} or more ({'paired' if paired else 'Welch'} "
                     "t test)")
    return sentence, differs


def tighter(metric: str, end: dict) -> str:
    """Which interval is tighter on these runs, and why."""
    welch = end["interval"][1] - end["interval"][0]
    pair = end["paired"]["interval"][1] - end["paired"]["interval"][0]
    if math.isnan(welch) or math.isnan(pair):
        return f"{metric}: too few values to weigh the two intervals"
    r = end["paired"]["twin_correlation"]
    why = (f"twins correlate, r = {r:.2f}: what a seed does to both cancels" if pair < welch
           else f"twins correlate little (r = {r:.2f}): pairing only costs degrees of freedom")
    return (f"{metric}: paired interval {pair:.3g} wide, Welch's {welch:.3g}: "
            f"{'paired' if pair < welch else 'Welch'} is tighter ({why})")


def compare(specs_a: list[str], specs_b: list[str], metrics: list[str],
            unpaired: bool = False) -> dict:
    group_a = [Run(s) for s in expand_group(specs_a)]
    group_b = [Run(s) for s in expand_group(specs_b)]
    epoch, note = common_epoch(group_a + group_b)
    pairs, pairing = twins(group_a, group_b)
    paired = bool(pairs) and not unpaired
    report = {"a": [r.name for r in group_a], "b": [r.name for r in group_b],
              "method": "paired t interval of the twins, 95%" if paired
              else "Welch's t interval, 95%", "pairing": pairing, "paired": paired,
              "epoch": epoch, "epoch_note": note, "end": {}, "per_epoch": [], "verdicts": []}
    if pairs and unpaired:
        report["pairing"] += "; --unpaired: Welch's interval alone"
    warnings = ([note] if note else []) + _non_finite_warnings({"A": group_a, "B": group_b},
                                                               epoch)
    for m in METRICS:
        a = Summary.of([metric_value(r, epoch, m) for r in group_a])
        b = Summary.of([metric_value(r, epoch, m) for r in group_b])
        diff, low, high = welch_interval(a, b)
        report["end"][m] = {"a": a.__dict__, "b": b.__dict__, "difference": diff,
                            "interval": [low, high], "detectable": welch_detectable(a, b),
                            "paired": paired_entry(pairs, epoch, m) if paired else None}
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
        sentence, differs = verdict(m, report["end"][m], paired)
        report["verdicts"].append({"metric": m, "verdict": sentence, "differs": differs})
        differ.append(differs)
    report["tighter"] = [tighter(m, report["end"][m]) for m in metrics] if paired else []
    report["settings_between"], more = settings_report(group_a, group_b)
    report["warnings"] = warnings + more
    report["exit"] = 2 if None in differ else (1 if any(differ) else 0)
    return report


def format_report(report: dict) -> str:
    where = (f"at epoch {report['epoch']} (the last epoch every run evaluated)"
             if report["epoch_note"] else "at the end (each run's last epoch)")
    lines = [f"group A ({len(report['a'])} runs): {', '.join(report['a'])}",
             f"group B ({len(report['b'])} runs): {', '.join(report['b'])}",
             report["pairing"], "",
             f"{where}; difference B - A, Welch's t interval, 95%:",
             f"{'metric':>13} {'A mean':>10} {'A std':>9} {'A range':>19} {'B mean':>10} "
             f"{'B std':>9} {'B range':>19} {'B - A':>10} {'95% interval':>21}"]
    for m, v in report["end"].items():
        a, b = v["a"], v["b"]
        low, high = v["interval"]
        lines.append(f"{m:>13} {a['mean']:>10.4g} {a['std']:>9.3g} "
                     f"{a['low']:>9.4g}..{a['high']:<9.4g} {b['mean']:>10.4g} {b['std']:>9.3g} "
                     f"{b['low']:>9.4g}..{b['high']:<9.4g} {v['difference']:>+10.4g} "
                     f"{low:>+10.4g}..{high:<+10.4g}")
    if report["paired"]:
        lines += ["", "the twins' differences B - A, paired t interval, 95%:",
                  f"{'metric':>13} {'pairs':>5} {'mean':>10} {'std':>9} {'95% interval':>21} "
                  f"{'twins r':>8}"]
        for m, v in report["end"].items():
            p = v["paired"]
            lines.append(f"{m:>13} {p['n']:>5} {p['difference']:>+10.4g} {p['std']:>9.3g} "
                         f"{p['interval'][0]:>+10.4g}..{p['interval'][1]:<+10.4g} "
                         f"{p['twin_correlation']:>8.2f}")
        lines += ["which is tighter on these runs:"] + [f"  {t}" for t in report["tighter"]]
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
    lines += ["", f"verdict ({report['method']}):"]
    lines += [f"  {v['verdict']}" for v in report["verdicts"]]
    return "\n".join(lines)


def t_test_seeds(effect: float, std: float) -> tuple[int | None, float]:
    """Seeds per group by the t test (None past :data:`SEED_SEARCH_LIMIT`, where the search
    stops) and by the normal approximation, for ``effect`` at spread ``std``."""
    try:
        with np.errstate(over="ignore"):  # said below, not as a numpy warning
            t_based, normal = seeds_needed(effect, std, limit=SEED_SEARCH_LIMIT)
    except OverflowError:  # (std / effect)^2 beyond floats: far past the search as well
        return None, math.inf
    # The search returns where it stopped, short of the power asked for, or, starting past
    # the limit, the normal figure less one: neither is the t test's count.
    searched = t_based < SEED_SEARCH_LIMIT or (
        t_based == SEED_SEARCH_LIMIT
        and t_test_power(effect, std * math.sqrt(2 / t_based), 2 * t_based - 2) >= POWER)
    return (t_based if searched else None), normal


def _seeds_text(seeds: int | None) -> str:
    return str(seeds) if seeds is not None else f"more than {SEED_SEARCH_LIMIT}"


def plan(specs: list[str], metrics: list[str], effects: list[float]) -> dict:
    """Seeds per group needed to show each of ``effects`` at the group's measured spread; the
    spread of a few seeds is itself uncertain, so also at the ends of its 95% interval."""
    group = [Run(s) for s in expand_group(specs)]
    epoch, note = common_epoch(group)
    report = {"a": [r.name for r in group], "epoch": epoch, "epoch_note": note,
              "method": f"two-sample t test {POWER_WORDS} (noncentral t), equal spreads; "
                        "the normal approximation beside it", "metrics": [], "exit": 0}
    for m in metrics:
        s = Summary.of([metric_value(r, epoch, m) for r in group])
        entry = {"metric": m, "n": s.n, "std": s.std, "effects": []}
        if s.n < 2:
            entry["note"] = f"{s.n} finite value(s): a spread needs 2 or more seeds"
            report["exit"] = 2
        else:
            chi = stats.chi2.ppf([0.975, 0.025], s.n - 1)
            entry["std_interval"] = (s.std * np.sqrt((s.n - 1) / chi)).tolist()
            for effect in effects:
                t_based, normal = t_test_seeds(effect, s.std)
                entry["effects"].append({
                    "effect": effect, "seeds": t_based, "seeds_normal": normal,
                    "seeds_more_than": SEED_SEARCH_LIMIT if t_based is None else None,
                    "seeds_range": [t_test_seeds(effect, bound)[0]
                                    for bound in entry["std_interval"]]})
        report["metrics"].append(entry)
    return report


def format_plan(report: dict) -> str:
    lines = [f"group A ({len(report['a'])} runs): {', '.join(report['a'])}",
             f"spread at epoch {report['epoch']}; seeds per group, {report['method']}:"]
    if report["epoch_note"]:
        lines.append(f"WARNING: {report['epoch_note']}")
    for entry in report["metrics"]:
        if "note" in entry:
            lines.append(f"  {entry['metric']}: cannot tell: {entry['note']}")
            continue
        low, high = entry["std_interval"]
        lines.append(f"  {entry['metric']}: spread (std) {entry['std']:.3g} over {entry['n']} "
                     f"seeds (95% interval {low:.3g} to {high:.3g})")
        for e in entry["effects"]:
            count = (f"{e['seeds']} seeds per group (normal approximation {e['seeds_normal']})"
                     if e["seeds"] is not None else
                     f"more than {SEED_SEARCH_LIMIT} seeds per group; the normal approximation "
                     + (f"says about {e['seeds_normal']}" if math.isfinite(e["seeds_normal"])
                        else "overflows a float"))
            low, high = map(_seeds_text, e["seeds_range"])
            lines.append(f"    a difference of {e['effect']:g}: {count}; {low} to {high} across "
                         "the spread's interval")
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
    parser = argparse.ArgumentParser(
        description="Is B better than A beyond seed noise? Or, with --plan, how many seeds "
                    "would show a difference?",
        epilog="Power (the smallest difference a 'within seed noise' verdict could have shown, "
               "and --plan's seeds) comes from the noncentral t distribution, the t test's own "
               "(Welch's degrees of freedom for unequal spreads), not the normal "
               "approximation, which promises too much with few seeds; --plan prints the "
               "normal figure beside it.")
    parser.add_argument("--a", nargs="+", required=True, help="runs of group A (or one folder)")
    parser.add_argument("--b", nargs="+", default=None, help="runs of group B (or one folder)")
    parser.add_argument("--metric", action="append", choices=METRICS, default=None,
                        help="metric for the verdict (repeatable; default mAP@0.5 and "
                             "mAP@0.5:0.95)")
    parser.add_argument("--unpaired", action="store_true",
                        help="Welch's interval alone, even when every run has its twin (the "
                             "same seed) in the other group")
    parser.add_argument("--plan", action="store_true",
                        help="no comparison: the seeds per group needed to show --effect at "
                             f"group A's spread, {POWER_WORDS.replace('%', '%%')} (t test; "
                             "normal approximation beside it)")
    parser.add_argument("--effect", type=float, action="append", default=None,
                        help="with --plan: the difference to show, in the metric's units "
                             "(repeatable; e.g. 0.01 for 0.01 mAP)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--mlflow-run", default=None, metavar="RUN_ID",
                        help="also log the verdict and the report to this MLflow run "
                             "(MLFLOW_TRACKING_URI, else the local mlruns/ folder)")
    parser.add_argument("--out", default=None, help="folder for groups.png (default: current)")
    return parser


def main(args: argparse.Namespace) -> int:
    metrics = args.metric or ["mAP@0.5", "mAP@0.5:0.95"]
    bad = [e for e in args.effect or [] if not (math.isfinite(e) and e > 0)]
    problem = (("--plan needs --effect (e.g. --effect 0.01)" if not args.effect else
                "--plan reads group A only: leave out --b" if args.b else
                f"--effect must be a finite number above 0, got {bad[0]:g}" if bad else None)
               if args.plan
               else "--effect goes with --plan" if args.effect
               else "give group B (--b), or --plan for the seeds a difference needs"
               if not args.b else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        report = (plan(args.a, metrics, args.effect) if args.plan
                  else compare(args.a, args.b, metrics, args.unpaired))
    except InputError as err:
        return report_input_error(err)
    if args.plan:
        report["plot"] = None
        print_report(report, args.json, format_plan)
        return report["exit"]
    out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    plot_groups(report, out / "groups.png")
    report["plot"] = str(out / "groups.png")
    print_report(report, args.json, format_report)
    log_to_mlflow(args.mlflow_run, "compare_groups", report["exit"], report, format_report)
    return report["exit"]


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
