import numpy as np

from utils.data.augment import (
    AUGMENT_KEYS,
    flip_lr,
    flip_ud,
    letterbox,
    mixup,
    mosaic,
    random_affine,
)


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


def test_mixup_blends_at_a_beta_ratio_and_keeps_both_boxes():
    a, b = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 200, np.uint8)
    boxes_a, boxes_b = np.array([[0, 1.0, 1, 3, 3]]), np.array([[2, 4.0, 4, 6, 6]])
    out, boxes = mixup(a, boxes_a, b, boxes_b, np.random.default_rng(0))
    ratio = np.random.default_rng(0).beta(32, 32)
    assert out.dtype == np.uint8 and (out == int(200 * (1 - ratio))).all()
    assert 0.25 < ratio < 0.75
    np.testing.assert_array_equal(boxes, np.concatenate((boxes_a, boxes_b)))
    assert "mixup" in AUGMENT_KEYS  # so --repro turns it off unless --augment


def test_a_dataset_item_with_mixup_repeats_and_adds_a_second_images_boxes(tiny_data):
    import torch

    from utils.data.datasets import YoloDataset
    files = sorted((tiny_data.parent / "images" / "train").glob("*.png"))
    mixed = YoloDataset(files, 4, 64, augment=True, hyp={"mixup": 1.0}, seed=0)
    plain = YoloDataset(files, 4, 64, augment=True, hyp={"mixup": 0.0}, seed=0)
    counts = []
    for index in range(4):
        image, labels, _, _ = mixed[(2, index)]
        again, again_labels, _, _ = mixed[(2, index)]
        assert torch.equal(image, again) and torch.equal(labels, again_labels)
        base, base_labels, _, _ = plain[(2, index)]
        # The item's own image and boxes come first, as without mixup; then the other's.
        assert torch.equal(labels[:len(base_labels)], base_labels)
        counts.append(len(labels) - len(base_labels))
        assert not torch.equal(image, base)
    assert sum(counts) > 0
    rect = YoloDataset(files, 4, 64, augment=True, hyp={"mixup": 1.0}, rect=True, batch_size=4)
    assert torch.equal(rect[(0, 1)][1], YoloDataset(files, 4, 64, augment=True, rect=True,
                                                      batch_size=4)[(0, 1)][1])
