"""tools.seed_range: a seed group kept as one JSON file, read back as the group's runs."""
import json
import math

import pytest
import yaml

from tools.seed_range import get_args_parser, main
from utils.engine.results import format_line, write_results
from utils.engine.run_folder import Run
from utils.engine.seed_reference import load_group, reference_runs

VALUES = {"mem_gb": 1.0, "box": 0.05, "obj": 0.1, "cls": 0.2, "total": 0.35, "targets": 10,
          "img_size": 64, "P": 0.5, "R": 0.6, "mAP@0.5": 0.55, "F1": 0.54, "val_box": 0.04,
          "val_obj": 0.09, "val_cls": 0.19, "mAP@0.5:0.95": 0.3}
EVALUATED = ("P", "R", "mAP@0.5", "F1", "val_box", "val_obj", "val_cls", "mAP@0.5:0.95")


def _run(folder, seed, epochs=3, written=None, shift=0.0):
    """A run folder of ``epochs`` (``written`` of them), epoch 0 not evaluated (--notest)."""
    folder.mkdir(parents=True)
    lines = []
    for e in range(epochs if written is None else written):
        values = dict(VALUES, **{"mAP@0.5": 0.5 + 0.1 * e + shift})
        if e == 0:
            values.update(dict.fromkeys(EVALUATED, math.nan))
        lines.append(format_line(e, epochs, values, f"{seed:08x}{e:08x}"))
    write_results(folder / "results.txt", lines)
    (folder / "repro.yaml").write_text(yaml.safe_dump(
        {"options": {"seed": seed, "epochs": epochs, "repro": True}, "precision": "fp32",
         "shapes_digest": "p0", "environment": {"machine": {"cpu": {"flags": ["avx2"]}}}}))
    return folder


def _write(tmp_path, capsys, *specs):
    out = tmp_path / "ref.json"
    code = main(get_args_parser().parse_args([*map(str, specs), "--out", str(out)]))
    return code, out, capsys.readouterr()


def test_the_file_reads_back_as_the_groups_runs(tmp_path, capsys):
    for seed in range(3):
        _run(tmp_path / "group" / f"seed{seed}", seed, shift=0.01 * seed)
    code, out, printed = _write(tmp_path, capsys, tmp_path / "group")
    assert code == 0
    assert "3 seeds [0, 1, 2], 3 epochs" in printed.out
    assert "epoch 2: mAP@0.5 0.7000..0.7200" in printed.out
    assert "epoch 0: not evaluated" in printed.out
    text = out.read_text()
    assert "NaN" not in text  # strict JSON: the unevaluated epoch's columns are null
    reference = json.loads(text)
    assert reference["made_by"].startswith("python -m tools.seed_range ")
    kept = reference_runs(out)
    folders = [Run(str(tmp_path / "group" / f"seed{s}")) for s in range(3)]
    for run, folder in zip(kept, folders):
        assert run.settings == folder.settings
        assert sorted(run.rows) == sorted(folder.rows) and run.epochs == folder.epochs
        for e in run.rows:
            assert run.rows[e].fingerprint == folder.rows[e].fingerprint
            a, b = run.rows[e].values, folder.rows[e].values
            assert a.keys() == b.keys()
            assert all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)
    assert [r.name for r in load_group([str(out)])] == [f"{out}:seed{s}" for s in range(3)]


@pytest.mark.parametrize("case, message", [
    ("one", "1 run: a seed range needs 2 or more"),
    ("unfinished", "epochs [0, 1] of a 3-epoch schedule: not a finished run"),
    ("same seed", "seeds [0, 0]: each run must record its own seed"),
    ("schedules", "runs of different schedules ([3, 4] epochs)"),
])
def test_what_is_no_seed_range_is_refused(tmp_path, capsys, case, message):
    runs = [_run(tmp_path / "a", 0)]
    if case == "unfinished":
        runs.append(_run(tmp_path / "b", 1, written=2))
    elif case == "same seed":
        runs.append(_run(tmp_path / "b", 0))
    elif case == "schedules":
        runs.append(_run(tmp_path / "b", 1, epochs=4))
    code, out, printed = _write(tmp_path, capsys, *runs)
    assert code == 2 and message in printed.err and not out.exists()


def test_not_a_reference_is_refused(tmp_path):
    from utils.base.errors import InputError
    other = tmp_path / "other.json"
    other.write_text('{"records": []}')
    with pytest.raises(InputError, match="not a seed-range reference"):
        reference_runs(other)
