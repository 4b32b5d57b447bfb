import numpy as np

from utils.data.augment import flip_lr, flip_ud, letterbox, mosaic, random_affine


def _image_with_block():
    """A 60x100 image, black but for a white block at x 10..30, y 5..25, and its box."""
    img = np.zeros((60, 100, 3), dtype=np.uint8)
    img[5:25, 10:30] = 255
    return img, np.array([[1, 10.0, 5.0, 30.0, 25.0]])


def _block_box(img):
    ys, xs = np.nonzero(img[:, :, 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)


def test_letterbox_keeps_box_on_object():
    img, boxes = _image_with_block()
    out, scale, (left, top) = letterbox(img, (128, 128))
    assert out.shape == (128, 128, 3)
    assert scale == 1.28 and left == 0 and top == 25  # 60 * 1.28 -> 77 rows, 51 to pad
    mapped = boxes[0, 1:] * scale + [left, top, left, top]
    np.testing.assert_allclose(_block_box(out), mapped, atol=1.0)


def test_flips_keep_box_on_object():
    img, boxes = _image_with_block()
    for flip in (flip_lr, flip_ud):
        out, new = flip(img, boxes)
        np.testing.assert_allclose(_block_box(out), new[0, 1:], atol=0.0)
        assert new[0, 0] == 1


def test_affine_keeps_box_on_object():
    img, boxes = _image_with_block()
    rng = np.random.default_rng(3)
    out, new = random_affine(img, boxes, rng, degrees=0, translate=0.1, scale=0.3)
    np.testing.assert_allclose(_block_box(out), new[0, 1:], atol=1.5)


def test_mosaic_boxes_follow_images():
    img, boxes = _image_with_block()
    rng = np.random.default_rng(0)
    canvas, new = mosaic([img] * 4, [boxes] * 4, 100, rng)
    assert canvas.shape == (200, 200, 3)
    for box in new:
        x1, y1, x2, y2 = box[1:].astype(int)
        assert canvas[y1:y2, x1:x2].mean() > 200  # every kept box covers the white block


def test_same_rng_same_result():
    img, boxes = _image_with_block()
    a = random_affine(img, boxes, np.random.default_rng(5), 10, 0.1, 0.3, 2)
    b = random_affine(img, boxes, np.random.default_rng(5), 10, 0.1, 0.3, 2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
