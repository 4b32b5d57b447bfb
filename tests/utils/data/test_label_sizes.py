"""utils.data.label_sizes: every label box's normalized size and its image's size, read without
decoding the images, as the dataset reads the labels."""
import cv2
import numpy as np
import pytest

from utils.base.errors import ImageError
from utils.data.label_sizes import label_sizes


def _image(root, name, h, w, labels=None):
    path = root / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))
    if labels is not None:
        label = root / "labels" / path.with_suffix(".txt").name
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(labels)
    return path


def test_sizes_pair_each_box_with_its_images_size(tmp_path):
    files = [_image(tmp_path, "a.png", 40, 80, "0 0.5 0.5 0.25 0.5\n1 0.5 0.5 0.1 0.2\n"),
             _image(tmp_path, "b.jpg", 30, 20),  # no label file
             _image(tmp_path, "c.png", 50, 50, "3 0.5 0.5 0.2 0.4\n9 0.5 0.5 0.3 0.3\n")]
    sizes = label_sizes(files, num_classes=4)
    np.testing.assert_array_equal(sizes.wh, np.float32([[0.25, 0.5], [0.1, 0.2], [0.2, 0.4]]))
    np.testing.assert_array_equal(sizes.image_hw, [[40, 80], [40, 80], [50, 50]])
    assert sizes.files == tuple(files) and sizes.report.missing == 1
    assert len(sizes.report.skipped) == 1  # class 9 of 4: skipped, as the dataset skips it
    assert len(label_sizes(files, num_classes=4, single_cls=True).wh) == 4


def test_an_unreadable_image_is_left_out_and_none_readable_is_said(tmp_path):
    good = _image(tmp_path, "good.png", 20, 20, "0 0.5 0.5 0.5 0.5\n")
    bad = tmp_path / "images" / "bad.png"
    bad.write_bytes(b"")
    (tmp_path / "labels" / "bad.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    sizes = label_sizes([good, bad], 4)
    assert sizes.files == (good,) and len(sizes.wh) == 1
    with pytest.raises(ImageError, match="none of the 1 images could be read: .*zero-byte"):
        label_sizes([bad], 4)
