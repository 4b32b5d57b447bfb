"""tools/evolve.py: the mutation drawn from (seed, generation), the paired verdict, the refusals
before any training, and (slow) a tiny search killed part-way and rerun, which must end as an
uninterrupted one does, byte for byte."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import MICRO_CFG, ROOT, process_alive, write_data_file
from tools import evolve, evolve_record
from utils.base.errors import InputError
from utils.base.repro import evolve_rng
from utils.data.augment import AUGMENT_KEYS
from utils.data.hyp import DEFAULT_HYP, STRING_KEYS, load_hyp
from utils.engine.results import format_line, read_results, write_results


def _train_args(data: Path, *extra: str) -> list[str]:
    return ["--cfg", str(MICRO_CFG), "--data", str(data), "--img-size", "64", "--batch-size",
            "4", "--epochs", "2", "--quiet", "--repro", "--no-tb", *extra]


def _argv(out: Path, data: Path, *options: str, extra: tuple = ()) -> list[str]:
    """A search of 2 generations on 2 seeds; ``options`` go to the tool (the later of a
    repeated option wins), ``extra`` to train.py."""
    return ["--generations", "2", "--evolve-seeds", "2", "--out", str(out), *options, "--",
            *_train_args(data, *extra)]


def _main(argv: list[str]) -> int:
    return evolve.main(evolve.get_args_parser().parse_args(argv))


def test_the_table_names_numeric_keys_and_holds_their_defaults():
    hyp = load_hyp(DEFAULT_HYP)
    # A new numeric hyp key needs its line in MUTATION, or a reason in NOT_MUTATED.
    assert set(hyp) - set(evolve.NOT_MUTATED) <= set(evolve.MUTATION)
    assert set(STRING_KEYS) | {"nbs"} <= set(evolve.NOT_MUTATED)
    for key, (gain, low, high) in evolve.MUTATION.items():
        assert key not in evolve.NOT_MUTATED and gain > 0 and low < high
        if key in hyp:
            assert low <= hyp[key] <= high, key


def test_the_mutation_is_drawn_from_seed_and_generation_alone():
    hyp = load_hyp(DEFAULT_HYP)
    table = evolve.mutable_table({"repro": False, "augment": False}, hyp)
    first = evolve.mutate(hyp, table, evolve_rng(0, 1))
    np.random.seed(123)  # a global generator moves nothing
    assert evolve.mutate(hyp, table, evolve_rng(0, 1)) == first
    assert evolve.mutate(hyp, table, evolve_rng(0, 2)) != first
    assert evolve.mutate(hyp, table, evolve_rng(1, 1)) != first
    for key, value in first.items():
        if key in table:
            _, low, high = table[key]
            factor = value / hyp[key] if hyp[key] else 1.0
            assert low <= value <= high and 0.3 - 1e-4 <= factor <= 3.0 + 1e-4, key
            assert value == float(f"{value:.5g}")
        else:  # words, nbs: never mutated
            assert value == hyp[key], key
    assert first != hyp and all(first[k] == 0 for k in table if hyp[k] == 0)


def test_repro_leaves_the_augmentation_keys_alone():
    hyp = load_hyp(DEFAULT_HYP)
    off = evolve.mutable_table({"repro": True, "augment": False}, hyp)
    assert not set(off) & set(AUGMENT_KEYS) and "lr0" in off
    kept = evolve.mutable_table({"repro": True, "augment": True}, hyp)
    assert set(AUGMENT_KEYS) & set(hyp) <= set(kept)


def test_kept_only_when_the_paired_interval_lies_above_zero():
    parent = [0.50, 0.60, 0.70]
    # Differences 0.02, 0.03, 0.01: mean 0.02, std 0.01, t(0.975, 2) 4.303: low -0.0048.
    mean, low, high, kept = evolve_record.judge(parent, [0.52, 0.63, 0.71], 0.95)
    assert mean == pytest.approx(0.02) and low == pytest.approx(0.02 - 4.3027 * 0.01 / 3 ** 0.5,
                                                                 abs=1e-4)
    assert not kept
    assert evolve_record.judge(parent, [0.52, 0.63, 0.71], 0.5)[3]  # a lower bar keeps it
    assert evolve_record.judge(parent, [0.6, 0.7, 0.8], 0.95)[3]  # every twin +0.1: no spread


def test_the_csv_and_the_plot_of_a_search(tmp_path):
    hyp = {"optimizer": "sgd", "lr0": 0.01}
    rows = [evolve_record.row(0, hyp, [0.5, 0.6])]
    rows.append(evolve_record.row(1, dict(hyp, lr0=0.012), [0.6, 0.7], rows[0]))
    rows.append(evolve_record.row(2, dict(hyp, lr0=0.02), [0.55, 0.72], rows[1]))
    text = evolve_record.csv_text(rows, [0, 1]).splitlines()
    assert text[0].startswith("generation,parent,verdict,fitness_mean,fitness_seed0,fitness_seed1,"
                              "difference_vs_parent,interval_low,interval_high,optimizer,lr0")
    assert text[1] == "0,,start,0.55,0.5,0.6,,,,sgd,0.01"
    assert text[2].startswith("1,0,kept,0.6") and text[2].endswith(",sgd,0.012")
    assert text[3].startswith(f"2,1,{evolve_record.NOT_KEPT},")
    evolve_record.plot_evolve(rows, [0, 1], 0.95, tmp_path / "evolve.png")
    assert (tmp_path / "evolve.png").stat().st_size > 10_000


@pytest.mark.parametrize("options, extra, message", [
    (("--generations", "0"), (), "--generations 0: at least 1"),
    (("--evolve-seeds", "1"), (), "--evolve-seeds 1: at least 2"),
    (("--confidence", "95"), (), "--confidence 95.0: a level between 0 and 1"),
    ((), ("--resume", "runs/train/exp"), "--resume among the train options: an evolve resumes "
                                         "itself"),
    ((), ("--seed", "3"), "--seed among the train options: tools.evolve sets them"),
    ((), ("--stop-after", "1"), "--stop-after among the train options"),
    ((), ("--epochs", "0"), "--epochs 0: must be a positive number"),
])
def test_bad_input_is_refused_before_any_training(tiny_data, tmp_path, capsys, options, extra,
                                                  message):
    assert _main(_argv(tmp_path / "out", tiny_data, *options, extra=extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_continuation_with_other_settings_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    args = evolve.get_args_parser().parse_args(_argv(out, tiny_data))
    options, start = evolve.train_settings(args.train_args)
    out.mkdir()
    record = evolve.settings_record(args, options, start, evolve.mutable_table(options, start))
    (out / "evolve.yaml").write_text(yaml.safe_dump(record))
    other = write_data_file(tmp_path)  # the same images, another data set file
    for argv, message in [
            (_argv(out, other), "train option --data: this folder's evolve had "
                                f"'{tiny_data.resolve()}', this command gives "
                                f"'{other.resolve()}'"),
            (_argv(out, tiny_data, extra=("--epochs", "3")), "train option --epochs: this "
                                                             "folder's evolve had 2"),
            (_argv(out, tiny_data, "--seed", "1"), "--seed 1: this folder's evolve ran with 0"),
            (_argv(out, tiny_data, "--confidence", "0.9"), "--confidence 0.9: this folder's")]:
        assert _main(argv) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "group" / "seed0").mkdir(parents=True)
    assert _main(_argv(tmp_path / "group", tiny_data)) == 2
    assert "holds files but no evolve.yaml" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["evolve.yaml"]  # nothing trained
    # The same settings, a longer search: --dry-run says the cost and trains nothing.
    assert _main(_argv(out, tiny_data, "--generations", "5", "--dry-run")) == 0
    said = capsys.readouterr().out
    assert "2 seeds x (5 generations + the start) = 12 trainings of 2 epochs" in said
    assert "generation 1 would try: " in said and "--dry-run: nothing trained" in said


def test_train_py_names_the_tool():
    done = subprocess.run([sys.executable, "train.py", "--evolve", "3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "python -m tools.evolve --generations G" in done.stderr


def test_plan_is_compare_groups_power_calculation(tmp_path, capsys):
    for seed, value in enumerate((0.50, 0.52, 0.47)):
        values = {"mem_gb": 1.0, "box": 0.05, "obj": 0.1, "cls": 0.2, "total": 0.35,
                  "targets": 10, "img_size": 64, "P": 0.5, "R": 0.6, "mAP@0.5": value,
                  "F1": 0.5, "val_box": 0.04, "val_obj": 0.09, "val_cls": 0.19,
                  "mAP@0.5:0.95": value / 2}
        run = tmp_path / "g000" / f"seed{seed}"
        run.mkdir(parents=True)
        write_results(run / "results.txt", [format_line(0, 1, values, f"{seed:016x}")])
    code = _main(["--plan", "--effect", "0.01", "--out", str(tmp_path)])
    said = capsys.readouterr().out
    assert code == 0 and "a difference of 0.01:" in said and "seeds per group" in said
    assert "paired t test of its twins" in said
    assert _main(["--plan", "--effect", "0.01"]) == 2
    assert "--plan reads a seed group's spread" in capsys.readouterr().err


def _search(tmp_path: Path) -> evolve.Search:
    return evolve.Search(tmp_path, 0, [0], 1, 0.95, ["--epochs", "2"], {}, 1)


def _fake_training(monkeypatch, status: int, words: str = "") -> list[list[str]]:
    """train.py replaced by one that writes ``words`` to the log and ends with ``status``."""
    calls = []

    def train(search, command, log):
        calls.append(command)
        log.write_text(log.read_text() + f"{evolve.LEG} ...\n{words}\n" if log.is_file()
                       else f"{evolve.LEG} ...\n{words}\n")
        return status
    monkeypatch.setattr(evolve, "_train", train)
    return calls


def test_a_diverged_training_scores_0_and_is_not_trained_again(tmp_path, monkeypatch):
    (tmp_path / "g001").mkdir()
    calls = _fake_training(monkeypatch, 1, "Stopped: non-finite loss nan at epoch 0, batch 2")
    assert evolve.run_training(_search(tmp_path), 1, 0) == (0.0, True)
    assert (tmp_path / "g001" / "seed0.diverged").is_file()
    assert evolve.run_training(_search(tmp_path), 1, 0) == (0.0, False) and len(calls) == 1


def test_a_failed_training_stops_the_search_and_a_checkpoint_is_resumed(tmp_path, monkeypatch):
    run = tmp_path / "g001" / "seed0"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "last.pt").write_bytes(b"")
    calls = _fake_training(monkeypatch, 1, "Traceback: MemoryError")
    with pytest.raises(evolve.TrainingFailed, match="train.py ended with status 1"):
        evolve.run_training(_search(tmp_path), 1, 0)
    # Resumed first; when that failed too, started again from nothing.
    assert calls[0][-2:] == ["--resume", str(run)] and "--resume" not in calls[1]
    assert not run.exists()


def test_one_search_at_a_time_in_a_folder(tmp_path):
    held = evolve.lock(tmp_path)
    with pytest.raises(InputError, match="another tools.evolve is running in this folder"):
        evolve.lock(tmp_path)
    held.close()
    evolve.lock(tmp_path).close()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # ended while read
    return found


def _kill_during(proc: subprocess.Popen, run: Path, timeout: float = 300) -> list[int]:
    """SIGKILL the search once ``run`` has written its first epoch; its trainings then."""
    deadline = time.time() + timeout
    while not (run / "results.txt").is_file():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "the search is too slow"
        time.sleep(0.05)
    trainings = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return trainings


@pytest.mark.slow
def test_killed_and_rerun_it_ends_as_an_uninterrupted_search(tiny_data, tmp_path):
    # Two searches side by side, one training thread each: a (straight) and b (killed inside
    # generation 1's first training, then the same command again).
    command = [sys.executable, "-m", "tools.evolve"]
    argv = {name: _argv(tmp_path / name, tiny_data, extra=("--threads", "1"))
            for name in ("a", "b")}
    straight = subprocess.Popen(command + argv["a"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    killed = subprocess.Popen(command + argv["b"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    trainings = _kill_during(killed, tmp_path / "b" / "g001" / "seed0")
    cut_at_epoch_0 = len(read_results(tmp_path / "b" / "g001" / "seed0")) == 1
    time.sleep(1)
    assert trainings and not any(process_alive(pid) for pid in trainings)  # died with it
    assert not (tmp_path / "b" / "evolve.csv").read_text().count("\n2,")
    rerun = subprocess.run(command + argv["b"], cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "g000 seed0: fitness" in rerun.stdout and "(reused)" in rerun.stdout
    out, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, out
    assert "cost: 2 seeds x (2 generations + the start) = 6 trainings of 2 epochs" in out
    assert "cost: one training took" in out
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "evolve.csv").read_text() == (b / "evolve.csv").read_text()
    assert len((a / "evolve.csv").read_text().splitlines()) == 4  # header, 3 candidates
    assert load_hyp(a / "best_hyp.yaml") == load_hyp(b / "best_hyp.yaml")
    assert (b / "evolve.png").stat().st_size > 10_000
    # Each generation's runs are a seed group that trained on its hyp file (but for the
    # augmentation --repro turns off).
    written, used = load_hyp(b / "g002" / "hyp.yaml"), load_hyp(b / "g002" / "seed1" / "hyp.yaml")
    assert {k: v for k, v in written.items() if k not in AUGMENT_KEYS} == \
        {k: v for k, v in used.items() if k not in AUGMENT_KEYS}
    if cut_at_epoch_0:  # the training it was on went on from its checkpoint
        assert "--resume" in (b / "g001" / "seed0.log").read_text()
