import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.data.labels import parse_label_text, read_labels


def test_good_rows():
    rows, warnings = parse_label_text("0 0.5 0.5 0.2 0.3\n\n3 0.1 0.9 0.05 0.1\n", 4, "a.txt")
    assert warnings == []
    np.testing.assert_allclose(rows, [[0, 0.5, 0.5, 0.2, 0.3], [3, 0.1, 0.9, 0.05, 0.1]])


@pytest.mark.parametrize("row, message", [
    ("0 0.5 0.5 0.2", "expected 5 columns"),
    ("0 0.5 0.5 0.2 0.3 0.9", "expected 5 columns"),
    ("0 0.5 abc 0.2 0.3", "non-numeric"),
    ("0 -0.1 0.5 0.2 0.3", "negative value"),
    ("0 0.5 1.2 0.2 0.3", "coordinate above 1"),
    ("0 0.5 0.5 0 0.3", "zero width or height"),
    ("4 0.5 0.5 0.2 0.3", "class 4 is not an integer in 0..3"),
    ("1.5 0.5 0.5 0.2 0.3", "not an integer"),
    ("0 nan 0.5 0.2 0.3", "non-finite"),
])
def test_bad_row_is_skipped_with_file_and_line(row, message):
    rows, warnings = parse_label_text(f"1 0.5 0.5 0.1 0.1\n{row}\n", 4, "lab.txt")
    assert len(rows) == 1
    assert len(warnings) == 1
    assert warnings[0].startswith("lab.txt:2: ") and message in warnings[0]


def test_duplicate_row_is_skipped():
    rows, warnings = parse_label_text("1 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 0.1\n", 4, "d.txt")
    assert len(rows) == 1 and "duplicate" in warnings[0] and warnings[0].startswith("d.txt:2:")


def test_missing_file_means_no_objects(tmp_path):
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    labels, report = read_labels([tmp_path / "a.txt", tmp_path / "missing.txt"], 2)
    assert [len(x) for x in labels] == [1, 0]
    assert report.missing == 1 and report.boxes == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789.- e\nnaif+")), max_size=120))
def test_parser_never_raises_and_keeps_only_valid_rows(text):
    rows, warnings = parse_label_text(text, 3, "f.txt")
    assert rows.shape[1] == 5
    if len(rows):
        assert ((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1)).all()
        assert (rows[:, 3:] > 0).all() and (rows[:, 0] < 3).all()
    assert all(w.startswith("f.txt:") for w in warnings)


def test_single_cls_keeps_every_class_as_zero(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n7 0.7 0.7 0.1 0.1\n")
    labels, report = read_labels([path], 1, single_cls=True)
    assert report.skipped == [] and report.boxes == 3
    np.testing.assert_array_equal(labels[0][:, 0], [0, 0, 0])


def test_single_cls_still_refuses_a_negative_class(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("-1 0.5 0.5 0.2 0.2\n")
    labels, report = read_labels([path], 1, single_cls=True)
    assert len(labels[0]) == 0 and "is not an integer 0 or more" in report.skipped[0]


def test_a_byte_order_mark_keeps_the_first_box(tmp_path):
    # Windows editors start a UTF-8 file with a BOM; the first row must still be read.
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff0 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n".encode("utf-8"))
    labels, report = read_labels([path], 2)
    assert report.skipped == []
    np.testing.assert_allclose(labels[0][:, 0], [0, 1])
