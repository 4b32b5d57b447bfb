import json

import pytest
import yaml

from tools.compare_groups import Summary, get_args_parser, main, welch_interval
from utils.core.significance import welch_detectable
from utils.engine.results import format_line, write_results

BASE = {"mem_gb": 1.0, "box": 0.05, "obj": 0.1, "cls": 0.2, "total": 0.35, "targets": 10,
        "img_size": 64, "P": 0.5, "R": 0.6, "mAP@0.5": 0.55, "F1": 0.54, "val_box": 0.04,
        "val_obj": 0.09, "val_cls": 0.19, "mAP@0.5:0.95": 0.3}


EVALUATED = ("P", "R", "mAP@0.5", "F1", "val_box", "val_obj", "val_cls", "mAP@0.5:0.95")


def _run(folder, final_map50, epochs=3, settings=None, seed=0, stop=None, unevaluated=(),
         blank=float("nan")):
    """A run whose mAP@0.5 climbs to ``final_map50``; mAP@0.5:0.95 is half of it. ``stop``:
    the rows written (a run stopped early); ``unevaluated``: epochs whose evaluation columns
    are ``blank`` (NaN as train.py writes them, 0.0 as it wrote them before)."""
    folder.mkdir(parents=True)
    lines = []
    for e in range(epochs if stop is None else stop):
        value = final_map50 - 0.1 * (epochs - 1 - e)
        values = dict(BASE, **{"mAP@0.5": value, "mAP@0.5:0.95": value / 2})
        if e in unevaluated:
            values.update(dict.fromkeys(EVALUATED, blank))
        lines.append(format_line(e, epochs, values, f"{seed:08x}{e:08x}"))
    write_results(folder / "results.txt", lines)
    record = {"options": {"seed": seed, "name": folder.name, "adam": False}}
    for key, value in (settings or {}).items():
        record["options"][key] = value
    (folder / "repro.yaml").write_text(yaml.safe_dump(record))
    return str(folder)


def _group(root, finals, **kwargs):
    return [_run(root / f"seed{i}", f, seed=i, **kwargs) for i, f in enumerate(finals)]


def _main(capsys, tmp_path, a, b, *extra):
    code = main(get_args_parser().parse_args(["--a", *a, "--b", *b, "--out", str(tmp_path),
                                              *extra]))
    return code, capsys.readouterr()


def test_welch_interval_by_hand():
    # means 2 and 5, std 1 each, n 3: se sqrt(2/3), df 4, t(0.975, 4) = 2.7764
    diff, low, high = welch_interval(Summary.of([1, 2, 3]), Summary.of([4, 5, 6]))
    assert diff == 3 and low == pytest.approx(3 - 2.7764 * (2 / 3) ** 0.5, abs=1e-4)
    assert high == pytest.approx(3 + 2.7764 * (2 / 3) ** 0.5, abs=1e-4)


def test_a_real_difference_is_called_one(tmp_path, capsys):
    a = _group(tmp_path / "a", [0.50, 0.51, 0.49])
    b = _group(tmp_path / "b", [0.60, 0.61, 0.59], settings={"adam": True})
    code, out = _main(capsys, tmp_path, a, b, "--unpaired")
    assert code == 1
    assert "mAP@0.5: B beats A by +0.1, 95% interval +0.0" in out.out
    assert "larger than the seed spread" in out.out
    assert "--unpaired: Welch's interval alone" in out.out and "twins' differences" not in out.out
    # Each B run is its A twin plus 0.1 exactly: the paired interval has no width.
    code, out = _main(capsys, tmp_path, a, b)
    assert code == 1 and "mAP@0.5: B beats A by +0.1, 95% interval +0.1 to +0.1" in out.out
    assert "options.adam: A False; B True" in out.out
    assert (tmp_path / "groups.png").stat().st_size > 0


def test_noise_is_called_noise(tmp_path, capsys):
    a = _group(tmp_path / "a", [0.50, 0.52, 0.48])
    b = _group(tmp_path / "b", [0.51, 0.49, 0.53])
    # A group given as the folder that holds its runs.
    code, out = _main(capsys, tmp_path, [str(tmp_path / "a")], [str(tmp_path / "b")])
    assert code == 0 and out.out.count("seed") >= len(a) + len(b)
    assert "mAP@0.5: within seed noise: difference +0.01" in out.out
    assert "the groups' spreads (std) are 0.02 and 0.02" in out.out
    assert len(a) == 3 and "settings that differ between the groups:\n  none recorded" in out.out


def test_one_run_in_a_group_cannot_decide(tmp_path, capsys):
    a = _group(tmp_path / "a", [0.50])
    b = _group(tmp_path / "b", [0.60, 0.61, 0.59])
    code, out = _main(capsys, tmp_path, a, b)
    assert code == 2 and "cannot tell: group A has 1 finite value(s)" in out.out


def test_nan_is_left_out_with_a_warning(tmp_path, capsys):
    a = _group(tmp_path / "a", [0.50, 0.51, float("nan")])
    b = _group(tmp_path / "b", [0.60, 0.61, 0.59])
    code, out = _main(capsys, tmp_path, a, b, "--json")
    report = json.loads(out.out)
    assert code == 1 and report["end"]["mAP@0.5"]["a"]["n"] == 2
    assert any("has mAP@0.5 NaN at epoch 2: left out" in w for w in report["warnings"])


def test_inf_is_left_out_with_a_warning_too(tmp_path, capsys):
    a = _group(tmp_path / "a", [0.50, 0.51, float("inf")])
    b = _group(tmp_path / "b", [0.60, 0.61, 0.59])
    code, out = _main(capsys, tmp_path, a, b, "--json")
    report = json.loads(out.out)
    assert code == 1 and report["end"]["mAP@0.5"]["a"]["n"] == 2
    assert any("has mAP@0.5 inf at epoch 2: left out" in w for w in report["warnings"])


def test_a_group_stopped_early_is_compared_where_it_stopped(tmp_path, capsys):
    """Issue 22: B is the same training as A stopped at epoch 8 of 17. Each run's last epoch
    read "B is worse than A by -0.9 ...: larger than the seed spread"."""
    a = [_run(tmp_path / "a" / f"seed{i}", f, epochs=17, seed=i)
         for i, f in enumerate([0.80, 0.82, 0.78])]
    b = [_run(tmp_path / "b" / f"seed{i}", f, epochs=17, seed=i, stop=8)
         for i, f in enumerate([0.81, 0.79, 0.80])]
    code, out = _main(capsys, tmp_path, a, b, "--json")
    report = json.loads(out.out)
    assert code == 0 and report["epoch"] == 7
    assert report["end"]["mAP@0.5"]["a"]["mean"] == pytest.approx(0.8 - 0.9)
    assert report["verdicts"][0]["verdict"].startswith("mAP@0.5: within seed noise")
    assert "the last epoch every run evaluated; the runs end at epochs [7, 16]" in \
        report["warnings"][0]
    code, out = _main(capsys, tmp_path, a, b)
    assert "at epoch 7 (the last epoch every run evaluated); difference B - A" in out.out


@pytest.mark.parametrize("blank", [float("nan"), 0.0], ids=["nan", "old-zero"])
def test_unevaluated_epochs_never_count_as_zero(tmp_path, capsys, blank):
    """--notest runs evaluate the last epoch only; before NaN was written, the others read 0.0.
    Neither may be averaged in as a score of 0."""
    a = _group(tmp_path / "a", [0.50, 0.52, 0.48], unevaluated=(0, 1), blank=blank)
    b = _group(tmp_path / "b", [0.51, 0.49, 0.53])
    code, out = _main(capsys, tmp_path, a, b, "--json")
    report = json.loads(out.out)
    assert code == 0 and report["epoch"] == 2 and report["epoch_note"] is None
    first = report["per_epoch"][0]["mAP@0.5"]
    assert first["a"]["n"] == 0 and first["b"]["n"] == 3
    assert not any("left out" in w for w in report["warnings"])
    code, out = _main(capsys, tmp_path, a, b)
    assert "epoch   0: A not evaluated  B 0.3100" in out.out


@pytest.mark.parametrize("blank", [float("nan"), 0.0], ids=["nan", "old-zero"])
def test_no_epoch_evaluated_by_every_run_is_refused(tmp_path, capsys, blank):
    """A --notest run killed before its last epoch was evaluated: its 0.0s read as a real
    score of 0 ("B is worse than A"); there is no epoch to compare at."""
    a = _group(tmp_path / "a", [0.50, 0.52, 0.48])
    b = [_run(tmp_path / "b" / f"seed{i}", 0.5, seed=i, stop=2, unevaluated=(0, 1),
              blank=blank) for i in range(3)]
    code, out = _main(capsys, tmp_path, a, b)
    assert code == 2 and "no epoch that every run evaluated" in out.err


def test_runs_of_different_lengths_and_settings_within_a_group(tmp_path, capsys):
    a = [_run(tmp_path / "a0", 0.5, epochs=3), _run(tmp_path / "a1", 0.52, epochs=4, seed=1,
                                                     settings={"adam": True})]
    b = _group(tmp_path / "b", [0.50, 0.51])
    code, out = _main(capsys, tmp_path, a, b)
    assert "group A: runs have different numbers of epochs [3, 4]" in out.out
    assert "group A: runs differ in options.adam (False, True), not only in the seed" in out.out
    assert code in (0, 1)


def test_unreadable_input_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    b = _group(tmp_path / "b", [0.50, 0.51])
    code, out = _main(capsys, tmp_path, [str(tmp_path / "empty")], b)
    assert code == 2 and "no run folders" in out.err


def test_twins_that_share_a_seed_effect_are_compared_pair_by_pair(tmp_path, capsys):
    """Each seed moves both of its runs by the same amount (spread 0.02); B adds 0.01 give or
    take 0.001. Welch's interval cannot see through the seed spread, the paired one can."""
    seed_effect = [0.0, 0.03, -0.02, 0.01]
    a = _group(tmp_path / "a", [0.5 + s for s in seed_effect])
    b = _group(tmp_path / "b", [0.51 + s + e for s, e in zip(seed_effect,
                                                              [0.001, -0.001, 0.0, 0.0005])])
    code, out = _main(capsys, tmp_path, a, b, "--metric", "mAP@0.5")
    assert code == 1 and "paired: every run has its twin (seeds 0, 1, 2, 3)" in out.out
    assert "mAP@0.5: B beats A by +0.01012, 95% interval +0.0" in out.out
    assert "verdict (paired t interval of the twins, 95%)" in out.out
    assert "mAP@0.5: paired interval" in out.out and "paired is tighter (twins correlate" in out.out
    code, out = _main(capsys, tmp_path, a, b, "--metric", "mAP@0.5", "--unpaired")
    assert code == 0 and "mAP@0.5: within seed noise: difference +0.0101" in out.out
    assert "which is tighter" not in out.out


def test_groups_of_other_seeds_are_not_paired(tmp_path, capsys):
    a = _group(tmp_path / "a", [0.50, 0.52, 0.48])
    b = [_run(tmp_path / "b" / f"seed{i + 3}", f, seed=i + 3)
         for i, f in enumerate([0.51, 0.49, 0.53])]
    code, out = _main(capsys, tmp_path, a, b, "--json")
    report = json.loads(out.out)
    assert code == 0 and not report["paired"] and report["end"]["mAP@0.5"]["paired"] is None
    assert report["pairing"] == "not paired: the groups ran other seeds (A [0, 1, 2], B [3, 4, 5])"


def test_a_noise_verdict_says_what_these_seeds_could_have_shown(tmp_path, capsys):
    a = _group(tmp_path / "a", [0.50, 0.52, 0.48])
    b = _group(tmp_path / "b", [0.51, 0.49, 0.53])
    code, out = _main(capsys, tmp_path, a, b, "--unpaired", "--json")
    report = json.loads(out.out)
    shown = welch_detectable(Summary.of([0.50, 0.52, 0.48]), Summary.of([0.51, 0.49, 0.53]))
    assert report["end"]["mAP@0.5"]["detectable"] == pytest.approx(shown)
    # std 0.02 each, 3 seeds: se 0.0163 on 4 degrees of freedom, 3.76 se
    assert shown == pytest.approx(3.761 * 0.02 * (2 / 3) ** 0.5, abs=1e-3)
    assert (f"at 80% power and a two-sided 5% level these seeds could have shown a difference "
            f"of {shown:.3g} or more (Welch t test)") in report["verdicts"][0]["verdict"]


def test_plan_gives_the_seeds_a_difference_needs(tmp_path, capsys):
    """Spread 0.02: a difference of 0.02 is one standard deviation, 17 seeds per group by the
    t test (16 by the normal approximation); 0.01 needs 64 (63)."""
    a = _group(tmp_path / "a", [0.50, 0.52, 0.48])
    code = main(get_args_parser().parse_args(["--plan", "--a", *a, "--effect", "0.02",
                                              "--effect", "0.01", "--metric", "mAP@0.5"]))
    out = capsys.readouterr().out
    assert code == 0 and "mAP@0.5: spread (std) 0.02 over 3 seeds" in out
    assert "a difference of 0.02: 17 seeds per group (normal approximation 16)" in out
    assert "a difference of 0.01: 64 seeds per group (normal approximation 63)" in out
    assert "plot:" not in out


@pytest.mark.parametrize("argv, message", [
    (["--plan"], "--plan needs --effect"),
    (["--plan", "--effect", "0.01", "--b", "x"], "--plan reads group A only"),
    (["--effect", "0.01"], "--effect goes with --plan"),
    ([], "give group B (--b), or --plan"),
])
def test_plan_and_compare_options_that_do_not_fit(tmp_path, capsys, argv, message):
    a = _group(tmp_path / "a", [0.50, 0.52])
    assert main(get_args_parser().parse_args(["--a", *a, *argv])) == 2
    assert message in capsys.readouterr().err


def test_help_names_the_power_method():
    text = get_args_parser().format_help()
    assert "noncentral t" in text and "normal" in text and "80% power" in text


@pytest.mark.parametrize("effect", ["nan", "inf", "-inf", "0", "-0.01"])
def test_plan_refuses_an_effect_that_is_not_a_positive_number(tmp_path, capsys, effect):
    """Issue 13: --effect nan raised a traceback; inf planned 2 seeds."""
    a = _group(tmp_path / "a", [0.50, 0.52, 0.48])
    code = main(get_args_parser().parse_args(["--plan", "--a", *a, "--effect", "0.01",
                                              f"--effect={effect}"]))
    assert code == 2
    assert f"--effect must be a finite number above 0, got {effect}" in capsys.readouterr().err


def test_plan_says_when_the_seed_search_hits_its_limit(tmp_path, capsys):
    """Issue 13: --effect 0.0001 at a spread of 0.02 needs ~628,000 seeds per group by the
    normal approximation; the t test's search stops at 100,000 and printed the normal figure
    minus one as if it were the t test's count."""
    a = _group(tmp_path / "a", [0.50, 0.52, 0.48])
    code = main(get_args_parser().parse_args(["--plan", "--a", *a, "--effect", "0.0001",
                                              "--metric", "mAP@0.5"]))
    out = capsys.readouterr().out
    assert code == 0
    assert ("a difference of 0.0001: more than 100000 seeds per group; the normal "
            "approximation says about 627") in out
    assert "more than 100000 to more than 100000 across the spread's interval" in out
    main(get_args_parser().parse_args(["--plan", "--a", *a, "--effect", "0.0001", "--metric",
                                       "mAP@0.5", "--json"]))
    effect = json.loads(capsys.readouterr().out)["metrics"][0]["effects"][0]
    assert effect["seeds"] is None and effect["seeds_more_than"] == 100000
    assert 627000 < effect["seeds_normal"] < 629000
