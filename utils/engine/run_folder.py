"""The reader of run folders: one run's results.txt rows and recorded settings (`Run`), and a
group of runs, the same training under several seeds: its run folders, the epochs its runs
evaluated, each run's value of a metric there, the settings that differ between groups, and the
seeds that pair two groups' runs as twins. What `tools.drift`, `tools.compare_groups`,
`tools.gpu_summary` and `tools.golden` read.
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from utils.base.errors import InputError
from utils.engine.results import EpochResult, read_results


class Run:
    """One run: its results.txt rows by epoch and, when found, its recorded settings."""

    def __init__(self, spec: str):
        path = Path(spec)
        self.name = spec
        results = path / "results.txt" if path.is_dir() else path
        self.rows: dict[int, EpochResult] = {r.epoch: r for r in read_results(results)}
        self.epochs = next(iter(self.rows.values())).epochs
        record = results.parent / "repro.yaml"
        self.settings: dict = {}
        self.changes_within: list[str] = []  # settings a resume changed part-way through
        if record.is_file():
            try:
                recorded = yaml.safe_load(record.read_text()) or {}
            except yaml.YAMLError as err:
                raise InputError(f"not valid yaml ({err})", record) from None
            resumes = recorded.pop("resumes", None) or []
            self.settings = flatten(recorded)
            self._fold_legs(resumes)

    @classmethod
    def from_parts(cls, name: str, rows: list[EpochResult], settings: dict) -> Run:
        """A run kept elsewhere than in its folder (a seed-range reference, ``tools.seed_range``):
        its rows and its flattened settings, resumed legs already folded in."""
        run = cls.__new__(cls)
        run.name, run.rows = name, {r.epoch: r for r in rows}
        run.epochs = rows[0].epochs
        run.settings, run.changes_within = dict(settings), []
        return run

    def _fold_legs(self, resumes: list[dict]) -> None:
        """Fold resumed legs into the settings: a value that changed reads 'a, then b from
        epoch K', so it differs from a run that kept one value throughout. Each leg is compared
        with the value in force before it, not with the first leg's."""
        history: dict[str, list[tuple[int, object]]] = {}
        for leg in resumes:
            legged = {"environment": leg.get("environment") or {}}
            if leg.get("digests"):  # a leg trained on changed data says so
                legged["digests"] = leg["digests"]
            for key, value in flatten(legged).items():
                steps = history.get(key, [(0, self.settings.get(key))])
                if value != steps[-1][1]:
                    history[key] = steps + [(leg.get("epoch"), value)]
        for key, steps in history.items():
            self.settings[key] = f"{steps[0][1]!r}" + "".join(
                f", then {value!r} from epoch {epoch}" for epoch, value in steps[1:])
            self.changes_within.append(f"{key}: {self.settings[key]}")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# Settings that differ between the runs of one training under several seeds, by design: the
# seed, where the run went, and what the seed drew (the initial weights; anchors fitted to the
# data draw from it too). "repro" is --repro's printed notes, whose first names the seed; each
# decision in them is recorded under its own key as well.
PER_SEED = ("options.seed", "options.name", "options.project", "options.resume",
            "options.quiet", "initial_fingerprint", "autoanchor.seed",
            "autoanchor.anchors_after", "autoanchor.bpr_after", "autoanchor.aat_after",
            "autoanchor.kept", "repro")


def setting_values(group: list[Run], key: str) -> list[str]:
    """The distinct values (reprs, sorted) the runs of ``group`` recorded for one setting; a run
    that recorded none counts as None."""
    return sorted({repr(run.settings.get(key)) for run in group})


def setting_keys(runs: list[Run], ignore: tuple[str, ...] = PER_SEED) -> list[str]:
    """Every setting any of ``runs`` recorded, but those in ``ignore``."""
    return sorted({k for run in runs for k in run.settings} - set(ignore))


def settings_between(group_a: list[Run], group_b: list[Run],
                     ignore: tuple[str, ...] = PER_SEED) -> list[dict]:
    """The settings whose recorded values differ between two groups of runs: each as
    {"setting", "a", "b"} with each group's distinct values (:func:`setting_values`)."""
    between = []
    for key in setting_keys(group_a + group_b, ignore):
        a, b = setting_values(group_a, key), setting_values(group_b, key)
        if a != b:
            between.append({"setting": key, "a": a, "b": b})
    return between


# The columns an evaluation writes; train.py writes NaN in them for an epoch not evaluated.
EVALUATED = ("P", "R", "mAP@0.5", "F1", "val_box", "val_obj", "val_cls", "mAP@0.5:0.95")


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


def common_epoch(runs: list[Run]) -> tuple[int, str | None]:
    """The epoch to compare at: the last one every run evaluated, with a note when that is not
    every run's last epoch. Refused when no epoch was evaluated by all runs."""
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


def twins(group_a: list[Run], group_b: list[Run]) -> tuple[list[tuple[Run, Run]], str]:
    """Pairs (A run, B run) that recorded the same seed, in seed order, when every run of
    each group has its twin in the other; else no pairs. The second item says why."""
    seeds = []
    for label, group in (("A", group_a), ("B", group_b)):
        recorded = {run.name: run.settings.get("options.seed") for run in group}
        unknown = [name for name, seed in recorded.items() if seed is None]
        if unknown:
            return [], f"not paired: no seed recorded for {', '.join(unknown)} (group {label})"
        if len(set(recorded.values())) < len(group):
            return [], f"not paired: group {label} ran a seed twice"
        seeds.append({seed: run for run, seed in zip(group, recorded.values())})
    if set(seeds[0]) != set(seeds[1]):
        return [], (f"not paired: the groups ran other seeds (A {sorted(seeds[0])}, "
                    f"B {sorted(seeds[1])})")
    order = sorted(seeds[0])
    return ([(seeds[0][s], seeds[1][s]) for s in order],
            f"paired: every run has its twin (seeds {', '.join(map(str, order))})")
