import cv2
import numpy as np
import pytest
from PIL import Image

from utils.base.errors import ImageError
from utils.data.image_io import load_image


def _noise(h, w, channels=3, dtype=np.uint8, top=255):
    return (np.random.default_rng(0).random((h, w, channels)) * top).astype(dtype)


def test_exif_orientation_is_applied(tmp_path):
    # A phone photo held upright is stored sideways with orientation 6 (rotate 90 clockwise);
    # its labels are drawn on the upright picture, as every viewer shows it.
    path = tmp_path / "phone.jpg"
    image = Image.fromarray(_noise(40, 60))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes(), quality=95)
    stored = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    loaded = load_image(path)
    assert loaded.shape == (60, 40, 3)
    np.testing.assert_array_equal(loaded, cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE))


def test_a_jpeg_cut_short_but_ending_in_its_end_marker_is_named(tmp_path):
    whole = tmp_path / "whole.jpg"
    cv2.imwrite(str(whole), _noise(64, 64))
    data = whole.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) // 2] + b"\xff\xd9")  # the decoder fills the rest grey
    with pytest.raises(ImageError) as err:
        load_image(cut)
    assert str(err.value).startswith(str(cut)) and "premature end" in str(err.value)
    assert load_image(whole).shape == (64, 64, 3)


def test_alpha_and_16_bit_pngs_keep_their_colour_values(tmp_path):
    rgba = _noise(8, 9, 4)
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgba[:, :, :3])
    deep = _noise(8, 9, 3, np.uint16, 65535)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    np.testing.assert_array_equal(load_image(tmp_path / "d.png"), (deep >> 8).astype(np.uint8))
    grey = _noise(8, 9, 1)[:, :, 0]
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    np.testing.assert_array_equal(load_image(tmp_path / "g.png"), np.dstack([grey] * 3))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tiff", ".bmp"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_image_size_from_the_header_is_load_images_shape(tmp_path, suffix, orientation):
    """autoanchor reads each training image's size from its header (a quarter turn of the EXIF
    orientation swaps it, as load_image turns the pixels); Pillow's TIFF orientation differs,
    so TIFF (and BMP) are decoded."""
    from utils.data.image_io import image_size
    path = tmp_path / f"image{suffix}"
    image = Image.fromarray(_noise(40, 60))
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, **({} if suffix == ".bmp" else {"exif": exif.tobytes()}))
    assert image_size(path) == load_image(path).shape[:2]


def test_image_size_of_a_non_image_is_named(tmp_path):
    from utils.data.image_io import image_size
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    with pytest.raises(ImageError, match="notes.jpg"):
        image_size(path)
