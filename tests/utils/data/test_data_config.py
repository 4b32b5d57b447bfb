import pytest

from utils.base.errors import DataConfigError
from utils.data.data_config import list_images


def test_a_list_naming_one_image_twice_is_refused_with_both_lines(tmp_path):
    # Two copies of one image would share one image id in the evaluation.
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "images" / name).write_bytes(b"x")
    listing = tmp_path / "val.txt"
    listing.write_text("images/a.png\nimages/b.png\n./images/../images/a.png\n")
    with pytest.raises(DataConfigError) as err:
        list_images(listing)
    message = str(err.value)
    assert str(listing) in message and "lines 1 and 3" in message and "a.png" in message


def test_a_list_of_distinct_images_keeps_its_order(tmp_path):
    listing = tmp_path / "val.txt"
    listing.write_text("b.png\na.png\n")
    assert [p.name for p in list_images(listing)] == ["b.png", "a.png"]
