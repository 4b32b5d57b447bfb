"""A seed group's range as a small committed file: every run's per-epoch results and recorded
settings in one JSON (utils/engine/seed_reference.py), for ``tools.drift --noise FILE.json``.

    python -m tools.seed_group --seeds 5 --out runs/groups/repro5 -- --repro --epochs 5
    python -m tools.seed_range runs/groups/repro5 --out tests/golden/seed_range.json

The second command reads the group (run folders, or the folder holding them), refuses what is
no seed range (fewer than 2 runs, an unfinished run, a seed twice, different schedules), writes
the file and prints each epoch's range of mAP@0.5 and mAP@0.5:0.95 over the seeds.
tests/golden/seed_range.json is the one tools.gpu_check holds the CPU-vs-GPU difference against:
the built-in default training under --repro, 5 epochs (gpu_check's).

Exit status: 0 written, 2 an input that is no seed range.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from tools.drift import seed_range
from utils.base.atomic_io import atomic_write_text
from utils.base.errors import InputError, report_input_error
from utils.engine.run_folder import Run, expand_group
from utils.engine.seed_reference import build_reference


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Keep a seed group's range in one JSON file.")
    parser.add_argument("group", nargs="+", help="the group's run folders, or their folder")
    parser.add_argument("--out", required=True, help="the reference file to write (.json)")
    return parser


def main(args: argparse.Namespace) -> int:
    try:
        if not args.out.endswith(".json"):
            raise InputError(f"--out {args.out}: a reference is a .json file (tools.drift "
                             "--noise tells it from a run folder by the suffix)")
        runs = [Run(s) for s in expand_group(args.group)]
        command = "python -m tools.seed_range " + shlex.join([*args.group, "--out", args.out])
        reference = build_reference(runs, command)
    except InputError as err:
        return report_input_error(err)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), json.dumps(reference, indent=1, allow_nan=False) + "\n")
    print(f"{args.out}: {len(runs)} seeds {reference['seeds']}, {reference['epochs']} epochs")
    for epoch, entry in sorted(seed_range(runs).items()):
        cells = [f"{m} {entry[m]['min']:.4f}..{entry[m]['max']:.4f}"
                 for m in ("mAP@0.5", "mAP@0.5:0.95") if m in entry]
        print(f"  epoch {epoch}: " + ("; ".join(cells) or "not evaluated"))
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
