"""A seed-range reference: a seed group's per-epoch results and recorded settings in one small
JSON file, committed, so that a run on another machine can be held against the seed range
without the group's run folders (``tools.drift --noise FILE.json``). Built by
``python -m tools.seed_range GROUP --out FILE.json``.

The file keeps each run whole (every results.txt column of every epoch, its fingerprints and
its repro.yaml settings, flattened), not only the range: the checks ``--noise`` makes on a group
(the same schedule, data, model, image size, batch size, hyperparameters and optimizer) read
them as they read a run folder's.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from utils.base.errors import InputError
from utils.engine.results import EpochResult
from utils.engine.run_folder import Run, evaluated_epochs, expand_group

KIND = "seed-range reference"
FORMAT = 1


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None  # strict JSON: NaN (not evaluated) as null


def run_entry(run: Run, name: str) -> dict:
    """One run as the reference keeps it."""
    return {"name": name, "settings": run.settings,
            "rows": [{"epoch": r.epoch, "epochs": r.epochs, "fingerprint": r.fingerprint,
                      "values": {k: _number(v) for k, v in r.values.items()}}
                     for r in (run.rows[e] for e in sorted(run.rows))]}


def check_group(runs: list[Run]) -> None:
    """Refuse what is no seed range: fewer than 2 runs, a run that did not finish its schedule
    or was not evaluated at its end, runs of different schedules, a seed run twice, and runs
    resumed with other settings part-way (their bits are no one training's)."""
    if len(runs) < 2:
        raise InputError(f"{len(runs)} run: a seed range needs 2 or more (5 were measured "
                         "in docs/measurements/noise.md)")
    for run in runs:
        if sorted(run.rows) != list(range(run.epochs)):
            raise InputError(f"{run.name}: epochs {sorted(run.rows)} of a {run.epochs}-epoch "
                             "schedule: not a finished run")
        if run.epochs - 1 not in evaluated_epochs(run):
            raise InputError(f"{run.name}: its last epoch was not evaluated")
        if run.changes_within:
            raise InputError(f"{run.name}: resumed with other settings "
                             f"({'; '.join(run.changes_within)})")
    schedules = sorted({r.epochs for r in runs})
    if len(schedules) > 1:
        raise InputError(f"runs of different schedules ({schedules} epochs): one training "
                         "under several seeds has one")
    seeds = [r.settings.get("options.seed") for r in runs]
    if None in seeds or len(set(seeds)) < len(seeds):
        raise InputError(f"seeds {seeds}: each run must record its own seed")


def build_reference(runs: list[Run], command: str) -> dict:
    """The reference of a checked group (``command``: what made it, kept in the file)."""
    check_group(runs)
    ordered = sorted(runs, key=lambda r: r.settings["options.seed"])
    return {"kind": KIND, "format": FORMAT, "made_by": command,
            "seeds": [r.settings["options.seed"] for r in ordered], "epochs": ordered[0].epochs,
            "runs": [run_entry(r, f"seed{r.settings['options.seed']}") for r in ordered]}


def load_reference(path: str | Path) -> dict:
    path = Path(path)
    try:
        reference = json.loads(path.read_text())
    except OSError as err:
        raise InputError(f"cannot read the seed-range reference ({err.strerror})", path) from None
    except json.JSONDecodeError as err:
        raise InputError(f"not JSON ({err})", path) from None
    if not isinstance(reference, dict) or reference.get("kind") != KIND:
        raise InputError(f"not a {KIND} (python -m tools.seed_range makes one)", path)
    if reference.get("format") != FORMAT:
        raise InputError(f"format {reference.get('format')!r}, this code reads {FORMAT}", path)
    return reference


def reference_runs(path: str | Path) -> list[Run]:
    """The reference's runs, as run folders would give them; each named ``FILE:seedK``."""
    reference = load_reference(path)
    runs = []
    for entry in reference["runs"]:
        rows = [EpochResult(r["epoch"], r["epochs"],
                            {k: math.nan if v is None else v for k, v in r["values"].items()},
                            r["fingerprint"], 0) for r in entry["rows"]]
        runs.append(Run.from_parts(f"{path}:{entry['name']}", rows, entry["settings"]))
    return runs


def load_group(specs: list[str]) -> list[Run]:
    """The runs of a group given as run folders, results.txt files, folders holding run
    folders, or seed-range references (``.json`` files of ``tools.seed_range``)."""
    runs: list[Run] = []
    for spec in specs:
        if spec.endswith(".json"):
            runs += reference_runs(spec)
        else:
            runs += [Run(s) for s in expand_group([spec])]
    return runs
