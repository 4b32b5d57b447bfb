import hashlib
from pathlib import Path

import pytest

from utils.base.errors import InputError
from utils.data.hyp import (
    ADDED_KEYS,
    DEFAULT_HYP,
    SCRATCH_HYP,
    digest_without_added_keys,
    load_hyp,
    with_added_keys,
)

DATA = Path(__file__).resolve().parents[3] / "data"


def test_shipped_files_load():
    scratch, shapes = load_hyp(SCRATCH_HYP), load_hyp(DATA / "hyp.shapes.yaml")
    own = load_hyp(DEFAULT_HYP)
    assert scratch["nbs"] == 64 and shapes["nbs"] == 8 and own["nbs"] == 16
    assert set(scratch) == set(shapes) == set(own)


@pytest.mark.parametrize("change, message", [
    (("lr0: 0.01", "lr0: fast"), "lr0: 'fast' is not a number"),
    (("lr0: 0.01", "lr_0: 0.01"), "unknown hyperparameter 'lr_0'"),
    (("iou_type: giou", "iou_type: diou"), "expected one of ('giou', 'ciou')"),
    (("lr0: 0.01", "lr0: [0.01"), "not valid yaml"),
])
def test_bad_hyp_file(tmp_path, change, message):
    text = SCRATCH_HYP.read_text()
    assert change[0] in text
    path = tmp_path / "h.yaml"
    path.write_text(text.replace(change[0], change[1]))
    with pytest.raises(InputError) as err:
        load_hyp(path)
    assert message in str(err.value) and str(err.value).startswith(f"{path}:")


def test_added_keys_are_in_every_hyp_file_and_off_but_the_own_recipes_measured_levers():
    files = sorted(DATA.glob("hyp*.yaml"))
    assert len(files) >= 3
    assert ADDED_KEYS == {"label_smoothing": 0.0, "mixup": 0.0, "scale_x_y": 1.0,
                          "close_mosaic": 0.0}
    for path in files:
        hyp = load_hyp(path)
        # The own-data recipe turns the neighbour-cell assignment on and closes mosaic for the
        # last 10 epochs (each measured: docs/measurements/own_data.md).
        on = {"scale_x_y": 2.0, "close_mosaic": 10} if path == DEFAULT_HYP else {}
        assert {k: hyp[k] for k in ADDED_KEYS} == {**ADDED_KEYS, **on}, path


def test_a_checkpoints_hyp_from_before_gets_the_off_values():
    old = {k: v for k, v in load_hyp(SCRATCH_HYP).items() if k not in ADDED_KEYS}
    filled, which = with_added_keys(old)
    assert which == list(ADDED_KEYS) and filled == load_hyp(SCRATCH_HYP)
    assert with_added_keys(load_hyp()) == (load_hyp(), [])


def test_scale_x_y_is_checked_as_a_centre_decode(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text(SCRATCH_HYP.read_text().replace("scale_x_y: 1.0", "scale_x_y: 0.5"))
    with pytest.raises(InputError, match=r"scale_x_y: 0.5, expected a number in 1..3"):
        load_hyp(path)


def test_a_hyp_file_with_the_added_keys_off_digests_as_it_did_before_them(tmp_path):
    text = SCRATCH_HYP.read_text()
    before = "".join(line for line in text.splitlines(keepends=True)
                     if line.split(":")[0] not in ADDED_KEYS)
    assert digest_without_added_keys(SCRATCH_HYP) == hashlib.sha256(before.encode()).hexdigest()
    on = tmp_path / "on.yaml"
    on.write_text(text.replace("mixup: 0.0", "mixup: 0.5"))
    assert digest_without_added_keys(on) != digest_without_added_keys(SCRATCH_HYP)


@pytest.mark.parametrize("key", ["label_smoothing", "mixup"])
def test_added_keys_are_fractions(tmp_path, key):
    path = tmp_path / "h.yaml"
    path.write_text(SCRATCH_HYP.read_text().replace(f"{key}: 0.0", f"{key}: 1.5"))
    with pytest.raises(InputError, match=f"{key}: 1.5, expected a number in 0..1"):
        load_hyp(path)
    path.write_text(SCRATCH_HYP.read_text().replace(f"{key}: 0.0 ", "").replace(
        f"{key}: 0.0", ""))
    with pytest.raises(InputError, match=f"missing hyperparameters: \\['{key}'\\]"):
        load_hyp(path)


def test_close_mosaic_is_a_whole_number_of_epochs(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text(SCRATCH_HYP.read_text().replace("close_mosaic: 0", "close_mosaic: 2.5"))
    with pytest.raises(InputError, match=r"close_mosaic: 2.5, expected a whole number of epochs"):
        load_hyp(path)
    path.write_text(SCRATCH_HYP.read_text().replace("close_mosaic: 0", "close_mosaic: -1"))
    with pytest.raises(InputError, match=r"close_mosaic: -1, expected a number in 0..100000"):
        load_hyp(path)
    path.write_text(SCRATCH_HYP.read_text().replace("close_mosaic: 0", "close_mosaic: 10"))
    assert load_hyp(path)["close_mosaic"] == 10
    # A hyp file written before the key: the message says which line keeps its training.
    path.write_text("".join(line for line in SCRATCH_HYP.read_text().splitlines(keepends=True)
                            if not line.startswith("close_mosaic")))
    with pytest.raises(InputError, match=r"missing hyperparameters: \['close_mosaic'\] \(keys "
                       r"added since the file was written; close_mosaic: 0 keeps its training"):
        load_hyp(path)
