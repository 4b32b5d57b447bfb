"""Start a group: the same training under seeds 0..N-1, one run folder each, in one folder.

    python -m tools.seed_group --seeds 3 --out runs/groups/base
    python -m tools.seed_group --seeds 3 --out runs/groups/adam -- --adam --epochs 30

Everything after ``--`` goes to train.py as it is (not --seed, --project or --name, which this
script sets). Then compare two groups:

    python -m tools.compare_groups --a runs/groups/base --b runs/groups/adam
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from utils.base.errors import InputError, run_script

ROOT = Path(__file__).resolve().parent.parent
SET_HERE = ("--seed", "--project", "--name", "--resume")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train under seeds 0..N-1 into one folder.")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (0..N-1)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="the group's folder (runs go to seedK/)")
    parser.add_argument("train_args", nargs="*", help="train.py options, after --")
    return parser


def main(args: argparse.Namespace) -> list[Path]:
    if args.seeds < 1:
        raise InputError(f"--seeds {args.seeds}: at least 1 (3 or more for a spread)")
    clash = [a for a in args.train_args if a.split("=")[0] in SET_HERE]
    if clash:
        raise InputError(f"{', '.join(clash)}: set by this script for each run of the group")
    out = Path(args.out)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    taken = [out / f"seed{s}" for s in seeds if (out / f"seed{s}").exists()]
    if taken:
        raise InputError(f"{', '.join(map(str, taken))} exist already: a group is never "
                         "written over; choose another --out")
    runs = []
    for seed in seeds:
        command = [sys.executable, "train.py", *args.train_args, "--seed", str(seed),
                   "--project", str(out.resolve()), "--name", f"seed{seed}"]
        print(f"seed {seed}: {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, cwd=ROOT)
        if done.returncode:
            print(f"seed {seed}: train.py ended with status {done.returncode}; the group so far: "
                  f"{', '.join(map(str, runs)) or 'none'}", file=sys.stderr)
            sys.exit(1)
        runs.append(out / f"seed{seed}")
    print(f"group of {len(runs)} runs in {out}; compare with:\n"
          f"  python -m tools.compare_groups --a {out} --b OTHER_GROUP")
    return runs


if __name__ == "__main__":
    run_script(main, get_args_parser())
