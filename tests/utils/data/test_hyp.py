from pathlib import Path

import pytest

from utils.base.errors import InputError
from utils.data.hyp import DEFAULT_HYP, load_hyp

DATA = Path(__file__).resolve().parents[3] / "data"


def test_shipped_files_load():
    scratch, shapes = load_hyp(DEFAULT_HYP), load_hyp(DATA / "hyp.shapes.yaml")
    assert scratch["nbs"] == 64 and shapes["nbs"] == 8
    assert set(scratch) == set(shapes)


@pytest.mark.parametrize("change, message", [
    (("lr0: 0.01", "lr0: fast"), "lr0: 'fast' is not a number"),
    (("lr0: 0.01", "lr_0: 0.01"), "unknown hyperparameter 'lr_0'"),
    (("iou_type: giou", "iou_type: diou"), "expected one of ('giou', 'ciou')"),
    (("lr0: 0.01", "lr0: [0.01"), "not valid yaml"),
])
def test_bad_hyp_file(tmp_path, change, message):
    text = DEFAULT_HYP.read_text()
    assert change[0] in text
    path = tmp_path / "h.yaml"
    path.write_text(text.replace(change[0], change[1]))
    with pytest.raises(InputError) as err:
        load_hyp(path)
    assert message in str(err.value) and str(err.value).startswith(f"{path}:")
