"""A hyperparameter search that knows chance: each generation mutates the parent's hyp, trains
the candidate on the parent's seeds, and keeps it only when it beats the parent beyond the seed
noise (the paired t interval of the twins' fitness differences lies above 0).

    python -m tools.evolve --generations 10 --evolve-seeds 3 --out runs/evolve/base
    python -m tools.evolve --generations 10 --evolve-seeds 3 --out runs/evolve/e30 -- --epochs 30
    python -m tools.evolve --generations 10 --evolve-seeds 3 --out runs/evolve/e30 --dry-run
    python -m tools.evolve --plan --effect 0.01 --a runs/groups/base   # seeds an effect needs

Everything after ``--`` goes to train.py as it is (not --seed, --project, --name, --resume or
--stop-after; --hyp is the starting hyp). Generation 0 trains the starting hyp on seeds
K0..K0+K-1 (--first-seed, default 0); each later generation trains one candidate, the parent's
hyp mutated by yolov5's scheme (:data:`MUTATION`), on the same seeds: twins, so the test is
paired. Fitness is train.py's: 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95 at the last epoch.

OUT holds evolve.yaml (the settings a continuation must repeat), gNNN/hyp.yaml with its runs
gNNN/seedK/ and their logs gNNN/seedK.log (each gNNN a seed group for tools.compare_groups),
evolve.csv (one row per candidate), evolve.png and best_hyp.yaml (the last kept parent). The
state is the run folders: rerunning the same command continues at the candidate it was on.
How it works and what it costs: docs/evolve.md.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from tools import compare_groups
from tools.evolve_record import KEPT, csv_text, plot_evolve, row
from utils.base.atomic_io import atomic_write_text
from utils.base.errors import InputError, report_input_error
from utils.base.repro import CUBLAS_WORKSPACE, evolve_rng
from utils.data.augment import AUGMENT_KEYS
from utils.data.data_config import load_data_config
from utils.data.hyp import DEFAULT_HYP, load_hyp
from utils.engine.loop import fitness
from utils.engine.options import options_parser, resolve_options
from utils.engine.restart import required_environment
from utils.engine.run_folder import Run, metric_value

ROOT = Path(__file__).resolve().parent.parent
# key: (gain, low, high), yolov5's table for this project's keys. The gain scales a key's step
# (momentum's 0.3: a small step moves it far in effect); low..high keeps each value sane.
MUTATION = {
    "lr0": (1.0, 1e-5, 0.1), "lrf": (1.0, 0.01, 1.0), "momentum": (0.3, 0.6, 0.98),
    "weight_decay": (1.0, 0.0, 0.001), "warmup_epochs": (1.0, 0.0, 5.0),
    "warmup_momentum": (1.0, 0.0, 0.95), "warmup_bias_lr": (1.0, 0.0, 0.2),
    "box": (1.0, 0.02, 0.2), "obj": (1.0, 0.2, 4.0), "cls": (1.0, 0.2, 4.0),
    "cls_pw": (1.0, 0.5, 2.0), "obj_pw": (1.0, 0.5, 2.0), "anchor_t": (1.0, 2.0, 8.0),
    "label_smoothing": (1.0, 0.0, 0.2),
    "hsv_h": (1.0, 0.0, 0.1), "hsv_s": (1.0, 0.0, 0.9), "hsv_v": (1.0, 0.0, 0.9),
    "degrees": (1.0, 0.0, 45.0), "translate": (1.0, 0.0, 0.9), "scale": (1.0, 0.0, 0.9),
    "shear": (1.0, 0.0, 10.0), "fliplr": (1.0, 0.0, 1.0), "flipud": (1.0, 0.0, 1.0),
    "mosaic": (1.0, 0.0, 1.0), "mixup": (1.0, 0.0, 1.0),
}
# Never mutated: words (optimizer, iou_type) have no scale to multiply, and nbs sets the
# accumulation, which changes what a step is rather than how it is tuned.
# scale_x_y changes the model's centre decode (written into its cfg), not a training setting;
# close_mosaic is a whole number of epochs, which a gain would make fractional.
NOT_MUTATED = ("optimizer", "iou_type", "nbs", "scale_x_y", "close_mosaic")
MUTATE_PROBABILITY, SIGMA, FACTOR_RANGE = 0.8, 0.2, (0.3, 3.0)
# Options this tool sets for each training, and options that never change a training's result
# (left out of the settings a continuation must repeat).
PER_RUN = ("seed", "project", "name", "hyp", "resume")
UNPINNED = ("quiet", "tb", "mlflow", "workers")
PATH_OPTIONS = ("cfg", "data", "weights")
PINNED = ("seed", "evolve_seeds", "first_seed", "confidence")
PR_SET_PDEATHSIG = 1
DIVERGED = "Stopped: non-finite loss"  # train.py's words when the loss became NaN or infinite
LEG = "==== tools.evolve:"  # heads each train.py command in a training's log


class TrainingFailed(RuntimeError):
    """A training ended with an error other than a diverged loss: the search stops there."""


@dataclass
class Search:
    """One evolve's settings and progress, as its trainings need them."""
    out: Path
    seed: int
    seeds: list[int]
    generations: int
    confidence: float
    train_args: list[str]
    environment: dict
    left: int  # trainings still to run, for the time estimate
    timed: float | None = None  # seconds of the first training this invocation ran


def mutable_table(options: dict, hyp: dict) -> dict:
    """The keys a candidate mutates: the table's keys this hyp has, less the augmentation keys
    when --repro turns augmentation off (a value that never acts would be searched blind)."""
    off = set(AUGMENT_KEYS) if options["repro"] and not options["augment"] else set()
    table = {k: v for k, v in MUTATION.items() if k in hyp and k not in off}
    if not table:
        raise InputError("no hyperparameter of the mutation table is in this hyp file")
    return table


def mutate(parent: dict, table: dict, rng: np.random.Generator) -> dict:
    """yolov5's mutation: each key of ``table`` with probability 0.8 multiplied by
    1 + gain * N(0, 1) * U(0, 1) * 0.2 (the uniform factor is one draw for all keys), the
    factor clipped to 0.3..3, the value to the key's bounds and 5 significant digits. Drawn
    again until the hyp changes. A key at 0 stays at 0: the mutation multiplies."""
    keys = list(table)
    gains = np.array([table[k][0] for k in keys])
    for _ in range(100):
        factors = np.ones(len(keys))
        while (factors == 1).all():  # yolov5: draw until some key moves
            factors = (gains * (rng.random(len(keys)) < MUTATE_PROBABILITY)
                       * rng.standard_normal(len(keys)) * rng.random() * SIGMA + 1)
            factors = factors.clip(*FACTOR_RANGE)
        child = dict(parent)
        for key, factor in zip(keys, factors):
            _, low, high = table[key]
            child[key] = float(f"{min(max(parent[key] * factor, low), high):.5g}")
        if child != parent:
            return child
    raise InputError("100 mutations in a row left the hyp unchanged: every mutated key sits at 0 "
                     "or pinned at a bound")


def train_settings(train_args: list[str]) -> tuple[dict, dict]:
    """train.py's options as each training resolves them (refused as train.py refuses them,
    before any training), and the starting hyp: --hyp, else the .data file's hyp=, else the
    default file."""
    parser = options_parser()
    parser.prog = "tools.evolve: the train.py options after --"
    parser.usage = "python -m tools.evolve ... -- [train.py options: python train.py --help]"
    parsed = parser.parse_args(train_args)
    if parsed.resume:
        raise InputError("--resume among the train options: an evolve resumes itself: rerun the "
                         "same tools.evolve command with the same --out")
    if parsed.stop_after is not None:
        raise InputError("--stop-after among the train options: each training of an evolve runs "
                         "to its last epoch, whose fitness is compared")
    given = [f"--{k}" for k in ("seed", "project", "name") if getattr(parsed, k) is not None]
    if given:
        raise InputError(f"{', '.join(given)} among the train options: tools.evolve sets them for "
                         "each training (seeds from --first-seed, run folders in --out)")
    options, _, _ = resolve_options(parsed, parser)
    hyp_path = (options.hyp or load_data_config(ROOT / options.data, check_paths=False).hyp
                or DEFAULT_HYP)
    return options.as_dict(), load_hyp(ROOT / hyp_path)


def settings_record(args: argparse.Namespace, options: dict, start: dict, table: dict) -> dict:
    """What evolve.yaml records: the settings that decide every candidate and verdict."""
    pinned = {k: (str((ROOT / v).resolve()) if k in PATH_OPTIONS and v else v)
              for k, v in options.items() if k not in PER_RUN + UNPINNED}
    record = {"seed": args.seed, "evolve_seeds": args.evolve_seeds,
              "first_seed": args.first_seed, "confidence": args.confidence,
              "generations": args.generations, "train_args": list(args.train_args),
              "train_options": pinned, "start_hyp": start,
              "mutation": {k: list(v) for k, v in table.items()}}
    return yaml.safe_load(yaml.safe_dump(record, sort_keys=False))  # as it reads back


def check_continuation(out: Path, record: dict) -> None:
    """Refuse an --out that holds another search (another data set, other train options, seeds,
    confidence, starting hyp or mutation table), naming the first setting that differs.
    --generations may change: it only says where to stop."""
    path = out / "evolve.yaml"
    if not path.is_file():
        if out.is_dir() and any(p.name != "evolve.lock" for p in out.iterdir()):
            raise InputError("holds files but no evolve.yaml: not an evolve's folder; choose "
                             "another --out", out)
        return
    try:
        old = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"not valid yaml ({err})", path) from None
    for key in PINNED:
        if old.get(key) != record[key]:
            raise InputError(f"--{key.replace('_', '-')} {record[key]}: this folder's evolve ran "
                             f"with {old.get(key)}; continue it with the same value, or choose "
                             "another --out", path)
    for group, words in (("train_options", "train option --{}"),
                         ("start_hyp", "the starting hyp's {}"),
                         ("mutation", "the mutation table's {}")):
        before, now = old.get(group) or {}, record[group]
        for key in sorted(set(before) | set(now)):
            if group == "train_options" and key not in before:
                continue  # an option train.py gained since: the search never set it
            if before.get(key) != now.get(key):
                name = key.replace("_", "-") if group == "train_options" else key
                raise InputError(f"{words.format(name)}: this folder's evolve had "
                                 f"{before.get(key)!r}, this command gives {now.get(key)!r}; "
                                 "continue it with the same, or choose another --out", path)


def lock(out: Path):
    """Hold OUT/evolve.lock while the search runs: a second search in the same folder would
    train the same runs at once. The kernel drops the lock when this process dies."""
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / "evolve.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InputError("another tools.evolve is running in this folder; let it finish or stop "
                         "it first", out) from None
    return handle


def finished(run: Path) -> bool:
    """A run whose results.txt has its last epoch, or that stopped early by its own rule
    (--patience: repro.yaml's stopped_early at its last row)."""
    try:
        record = Run(str(run))
    except InputError:  # no results.txt yet, or one cut short
        return False
    last = max(record.rows)
    return last == record.epochs - 1 or record.settings.get("stopped_early.epoch") == last


def run_fitness(run: Path) -> float:
    """train.py's fitness at the run's last epoch."""
    record = Run(str(run))
    epoch = max(record.rows)
    return fitness(metric_value(record, epoch, "mAP@0.5"),
                   metric_value(record, epoch, "mAP@0.5:0.95"))


def _die_with_parent(parent: int):
    """In the child, before train.py starts: the kernel kills it when the evolve dies, SIGKILL
    included, so a killed search never leaves a training writing into the folder that its
    rerun redoes. Linux only; elsewhere a killed search's training runs on to its end."""
    def arm() -> None:
        try:
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the evolve died before the line above
            os._exit(1)
    return arm


def _train(search: Search, command: list[str], log: Path) -> int:
    with open(log, "a") as sink:
        sink.write(f"{LEG} {' '.join(command)}\n")
        sink.flush()
        return subprocess.run(command, cwd=ROOT, env=search.environment, stdout=sink,
                              stderr=subprocess.STDOUT,
                              preexec_fn=_die_with_parent(os.getpid())).returncode


def _diverged(status: int | None, log: Path) -> bool:
    """Whether the log's last leg ended with train.py's words for a diverged loss."""
    return status == 1 and DIVERGED in log.read_text().rsplit(LEG, 1)[-1]


def run_training(search: Search, generation: int, seed: int) -> tuple[float, bool]:
    """One training's fitness, and whether it was trained now: a finished run is reused, an
    unfinished one with a checkpoint resumed, else trained from the start. A training whose
    loss diverged scores 0, as train.py scores a model without a finite mAP."""
    group = search.out / f"g{generation:03d}"
    run, log = group / f"seed{seed}", group / f"seed{seed}.log"
    diverged = group / f"seed{seed}.diverged"
    if diverged.is_file():
        return 0.0, False
    if finished(run):
        return run_fitness(run), False
    command = [sys.executable, str(ROOT / "train.py"), *search.train_args,
               "--hyp", str(group / "hyp.yaml"), "--seed", str(seed),
               "--project", str(group), "--name", f"seed{seed}"]
    print(f"  {group.name} seed{seed}: training, log {log}", flush=True)
    status = None
    if (run / "weights" / "last.pt").is_file():
        status = _train(search, [*command, "--resume", str(run)], log)
    if status != 0 and not _diverged(status, log):
        shutil.rmtree(run, ignore_errors=True)  # never started, or its resume was refused
        status = _train(search, command, log)
    if _diverged(status, log):
        atomic_write_text(diverged, f"{run}: the loss diverged (see {log.name}): fitness 0\n")
        return 0.0, True
    if status != 0 or not finished(run):
        raise TrainingFailed(f"{run}: train.py ended with status {status}; its output is in "
                             f"{log}. Rerun the same command to try it again")
    return run_fitness(run), True


def hyp_text(hyp: dict, header: str) -> str:
    """A hyp file train.py --hyp reads, in the starting file's key order."""
    return f"# {header}\n" + yaml.safe_dump(hyp, sort_keys=False)


def train_group(search: Search, generation: int, hyp: dict, header: str) -> list[float]:
    """The fitness of ``hyp`` on each seed of the search, one run folder each."""
    group = search.out / f"g{generation:03d}"
    group.mkdir(parents=True, exist_ok=True)
    atomic_write_text(group / "hyp.yaml", hyp_text(hyp, header))
    scores = []
    for seed in search.seeds:
        started = time.time()
        score, trained = run_training(search, generation, seed)
        scores.append(score)
        seconds = time.time() - started
        print(f"  g{generation:03d} seed{seed}: fitness {score:.4f} "
              f"({f'trained in {seconds:.0f} s' if trained else 'reused'})", flush=True)
        if trained:
            search.left -= 1
        if trained and search.timed is None:
            search.timed = seconds
            print(f"cost: one training took {seconds:.0f} s; the {search.left} left take about "
                  f"{_duration(seconds * search.left)}", flush=True)
    return scores


def _duration(seconds: float) -> str:
    return (f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"
            if seconds >= 90 else f"{seconds:.0f} s")


def publish(search: Search, rows: list[dict], parent: dict) -> None:
    """evolve.csv, evolve.png and best_hyp.yaml as they stand: after every candidate, so a
    search stopped part-way shows how far it got."""
    atomic_write_text(search.out / "evolve.csv", csv_text(rows, search.seeds))
    plot_evolve(rows, search.seeds, search.confidence, search.out / "evolve.png")
    atomic_write_text(search.out / "best_hyp.yaml", hyp_text(
        parent["hyp"], f"tools.evolve {search.out}: generation {parent['generation']}, fitness "
        f"{parent['mean']:.4f} (mean over seeds {', '.join(map(str, search.seeds))}); train "
        f"with python train.py --hyp {search.out / 'best_hyp.yaml'}"))


def _say(entry: dict, level: float) -> None:
    scores = ", ".join(f"{s:.4f}" for s in entry["fitness"])
    if entry["difference"] is None:
        print(f"generation 0 (the start): fitness {entry['mean']:.4f} ({scores})", flush=True)
        return
    mean, low, high = entry["difference"]
    print(f"generation {entry['generation']}: fitness {entry['mean']:.4f} ({scores}); minus "
          f"its parent g{entry['parent']}: {mean:+.4g}, paired {level:.0%} interval "
          f"{low:+.4g} to {high:+.4g}: {entry['verdict']}", flush=True)


def search_loop(search: Search, start: dict, table: dict) -> dict:
    """Generation 0, then one candidate a generation; returns the last parent."""
    print("generation 0: the starting hyp", flush=True)
    rows = [row(0, start, train_group(search, 0, start, "generation 0: the starting hyp"))]
    parent = rows[0]
    _say(parent, search.confidence)
    publish(search, rows, parent)
    for generation in range(1, search.generations + 1):
        hyp = mutate(parent["hyp"], table, evolve_rng(search.seed, generation))
        print(f"generation {generation}: {_changes(parent['hyp'], hyp)}", flush=True)
        scores = train_group(search, generation, hyp, f"generation {generation}: generation "
                             f"{parent['generation']}'s hyp mutated")
        rows.append(row(generation, hyp, scores, parent, search.confidence))
        _say(rows[-1], search.confidence)
        parent = rows[-1] if rows[-1]["verdict"] == KEPT else parent
        publish(search, rows, parent)
    return parent


def _changes(before: dict, after: dict) -> str:
    return ", ".join(f"{k} {before[k]:g} -> {after[k]:g}" for k in after
                     if after[k] != before[k])


def check_arguments(args: argparse.Namespace) -> None:
    """The search's own options, refused before anything is read or trained."""
    if args.generations is None or args.generations < 1:
        raise InputError(f"--generations {args.generations}: at least 1 (each generation trains "
                         "one candidate on every seed)")
    if args.evolve_seeds < 2:
        raise InputError(f"--evolve-seeds {args.evolve_seeds}: at least 2, the fewest twins a "
                         "paired test can measure a spread from (3 or more for a usable "
                         "interval)")
    if not 0 < args.confidence < 1:
        raise InputError(f"--confidence {args.confidence}: a level between 0 and 1, e.g. 0.95")
    if not args.out:
        raise InputError("--out: the evolve's folder is required (e.g. --out runs/evolve/base)")
    if args.effect:
        raise InputError("--effect goes with --plan")


def count_done(out: Path, generations: int, seeds: list[int]) -> int:
    """Trainings of generations 0..G already finished (or diverged) in ``out``."""
    return sum(finished(out / f"g{g:03d}" / f"seed{s}")
               or (out / f"g{g:03d}" / f"seed{s}.diverged").is_file()
               for g in range(generations + 1) for s in seeds)


def say_cost(args: argparse.Namespace, options: dict, out: Path, seeds: list[int]) -> int:
    """Print what the search costs before it starts; returns the trainings left."""
    total = args.evolve_seeds * (args.generations + 1)
    done = count_done(out, args.generations, seeds)
    print(f"cost: {args.evolve_seeds} seeds x ({args.generations} generations + the start) = "
          f"{total} trainings of {options['epochs']} epochs; {done} done in {out} already, "
          f"{total - done} to train. The time of one is measured on the first and the rest "
          "estimated from it", flush=True)
    return total - done


def evolve(args: argparse.Namespace) -> int:
    check_arguments(args)
    options, start = train_settings(args.train_args)
    table = mutable_table(options, start)
    out = Path(args.out).resolve()
    record = settings_record(args, options, start, table)
    check_continuation(out, record)
    seeds = list(range(args.first_seed, args.first_seed + args.evolve_seeds))
    left = say_cost(args, options, out, seeds)
    left_out = [k for k in MUTATION if k in start and k not in table]
    print(f"mutating {len(table)} keys: {', '.join(table)}" + (
        f"; not {', '.join(left_out)}: --repro turns augmentation off (--augment keeps it)"
        if left_out else ""), flush=True)
    if args.dry_run:
        hyp = mutate(start, table, evolve_rng(args.seed, 1))
        print(f"generation 1 would try: {_changes(start, hyp)}\n--dry-run: nothing trained")
        return 0
    required = required_environment(argparse.Namespace(**options))
    environment = dict(os.environ, **required)
    if required:  # what train.py's restart would set: each training starts once, not twice
        environment.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    handle = lock(out)
    try:
        atomic_write_text(out / "evolve.yaml", "# tools.evolve's settings; a continuation must "
                          "repeat them (--generations may change)\n"
                          + yaml.safe_dump(record, sort_keys=False))
        search = Search(out, args.seed, seeds, args.generations, args.confidence,
                        list(args.train_args), environment, left)
        parent = search_loop(search, start, table)
    finally:
        handle.close()
    best = parent["generation"]
    print(f"best: generation {best}, fitness {parent['mean']:.4f}; its hyp in "
          f"{out / 'best_hyp.yaml'}, the search in {out / 'evolve.csv'} and evolve.png. " + (
              f"Against the start:\n  python -m tools.compare_groups --a {out / 'g000'} "
              f"--b {out / f'g{best:03d}'}" if best else
              "No candidate beat the start beyond the seed noise."))
    return 0


def plan_seeds(args: argparse.Namespace) -> int:
    """--plan: tools.compare_groups' power calculation on a seed group (--a, else generation 0
    of --out)."""
    if not (args.a or args.out):
        raise InputError("--plan reads a seed group's spread: --a runs/groups/base, or --out of "
                         "an evolve (its generation 0)")
    argv = ["--plan", "--a", *(args.a or [str(Path(args.out) / "g000")])]
    for effect in args.effect or []:
        argv += ["--effect", repr(effect)]
    code = compare_groups.main(compare_groups.get_args_parser().parse_args(argv))
    if code != 2:
        print("tools.evolve keeps a candidate by the paired t test of its twins (--evolve-seeds "
              "is the seeds per group): twins that move together need fewer seeds than these "
              "unpaired figures. Fitness is 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95, so an effect on "
              "fitness reads mostly as one on mAP@0.5:0.95.")
    return code


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Search hyperparameters, keeping a mutation only when it beats its parent "
                    "beyond the seed noise (paired t test over the same seeds).",
        epilog="Rerun the same command with the same --out to continue a search that stopped. "
               "More in docs/evolve.md.")
    parser.add_argument("--generations", type=int, default=None,
                        help="G: candidates to try, one a generation; the search trains "
                             "K x (G + 1) runs")
    parser.add_argument("--evolve-seeds", type=int, default=3,
                        help="K: seeds each candidate trains on, the parent's: twins (at "
                             "least 2; default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds K0..K0+K-1")
    parser.add_argument("--out", default=None, help="the search's folder (runs/evolve/NAME)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the seed of the mutations (the trainings' seeds are --first-seed "
                             "on)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="the paired interval's level: a candidate is kept when its low "
                             "end is above 0 (default 0.95)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the cost and generation 1's mutation; train nothing")
    parser.add_argument("--plan", action="store_true",
                        help="no search: the seeds per group that --effect needs at a seed "
                             "group's spread (tools.compare_groups --plan)")
    parser.add_argument("--effect", type=float, action="append", default=None,
                        help="with --plan: the smallest effect worth keeping (repeatable)")
    parser.add_argument("--a", nargs="+", default=None,
                        help="with --plan: the seed group (default: --out's generation 0)")
    parser.add_argument("train_args", nargs="*", help="train.py options, after --")
    return parser


def main(args: argparse.Namespace) -> int:
    """Exit status: 0 done, 1 a training failed (rerun to retry it), 2 bad input, 130
    interrupted (rerun to continue)."""
    try:
        return plan_seeds(args) if args.plan else evolve(args)
    except InputError as err:
        return report_input_error(err)
    except TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command (the same --out) to continue where it "
              "stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
