import numpy as np
import pytest

from utils.data.datasets import EpochBatchSampler
from utils.data.labels import class_weights, image_weights


def _batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_order_is_a_function_of_seed_and_epoch():
    a = EpochBatchSampler(10, 4, shuffle=True, drop_last=False, seed=0)
    b = EpochBatchSampler(10, 4, shuffle=True, drop_last=False, seed=0)
    assert _batches(a, 3) == _batches(b, 3)          # same (seed, epoch): same batches
    assert _batches(a, 3) != _batches(a, 4)          # another epoch: another order
    assert _batches(a, 3) != _batches(EpochBatchSampler(10, 4, True, False, seed=1), 3)
    flat = [i for batch in _batches(a, 3) for i in batch]
    assert sorted(flat) == [(3, i) for i in range(10)]  # every sample once, tagged by epoch
    assert [len(b) for b in _batches(a, 3)] == [4, 4, 2] and len(a) == 3


def test_drop_last_and_no_shuffle():
    sampler = EpochBatchSampler(10, 4, shuffle=False, drop_last=True, seed=0)
    assert _batches(sampler, 0) == [[(0, i) for i in range(4)], [(0, i) for i in range(4, 8)]]
    assert len(sampler) == 2


def test_ranks_split_each_global_batch():
    whole = _batches(EpochBatchSampler(16, 8, True, True, seed=5), 2)
    shares = [_batches(EpochBatchSampler(16, 8, True, True, seed=5, rank=r, world_size=2), 2)
              for r in (0, 1)]
    for step, batch in enumerate(whole):
        assert shares[0][step] + shares[1][step] == batch
    with pytest.raises(ValueError, match="does not split"):
        EpochBatchSampler(16, 7, True, True, seed=0, world_size=2)


def _rect_set(tmp_path):
    """Five images of three aspect ratios, each labelled with one box of class = its index."""
    import cv2
    import numpy as np
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    files = []
    for i, (h, w) in enumerate([(40, 80), (80, 40), (64, 64), (30, 90), (90, 30)]):
        path = tmp_path / "images" / f"{i}.png"
        cv2.imwrite(str(path), np.full((h, w, 3), 20 * i, np.uint8))
        (tmp_path / "labels" / f"{i}.txt").write_text(f"{i} 0.5 0.5 0.2 0.2\n")
        files.append(path)
    return files


def test_rect_batches_share_a_stride_multiple_shape_and_keep_labels_with_images(tmp_path):
    from utils.data.datasets import YoloDataset
    dataset = YoloDataset(_rect_set(tmp_path), 5, 64, rect=True, batch_size=2, stride=32)
    for index in range(len(dataset)):
        image, labels, path, placement = dataset[index]
        assert tuple(image.shape[1:]) == tuple(dataset.batch_shapes[index // 2])
        assert all(s % 32 == 0 and s <= 64 for s in image.shape[1:])
        stem = int(path.rsplit("/", 1)[1].split(".")[0])
        assert labels[:, 1].tolist() == [stem]  # the label travelled with its image
        assert dataset.image_sizes[index] == placement.original
    heights_over_widths = [h / w for h, w in dataset.image_sizes]
    assert heights_over_widths == sorted(heights_over_widths)


def test_a_cpu_run_does_not_pin_its_batches_on_a_machine_with_a_gpu(tiny_data, tmp_path,
                                                                     monkeypatch):
    # The CPU run of the GPU experiment: pinning pays for a copy to a GPU that never comes.
    import torch

    from tests.helpers import MICRO_CFG
    from utils.engine import training_setup
    from utils.engine.options import options_parser, resolve_options

    build_loaders = training_setup.build_loaders

    def loaders_on_a_machine_with_a_gpu(*args):
        with monkeypatch.context() as patch:  # only here: cuDNN's set-up would ask for a GPU
            patch.setattr(torch.cuda, "is_available", lambda: True)
            return build_loaders(*args)

    monkeypatch.setattr(training_setup, "build_loaders", loaders_on_a_machine_with_a_gpu)
    argv = ["--cfg", str(MICRO_CFG), "--data", str(tiny_data), "--img-size", "64",
            "--batch-size", "4", "--epochs", "1", "--device", "cpu", "--quiet",
            "--project", str(tmp_path)]
    options, _, _ = resolve_options(options_parser().parse_args(argv), options_parser())
    training = training_setup.build_training(options, None, None)
    assert not training.train_loader.pin_memory and not training.val_loader.pin_memory


def _ultralytics_image_weights(labels, nc):
    """labels_to_class_weights and labels_to_image_weights as ultralytics writes them."""
    classes = np.concatenate(labels, 0)[:, 0].astype(int)
    weights = np.bincount(classes, minlength=nc)
    weights[weights == 0] = 1
    weights = 1 / weights
    weights /= weights.sum()
    class_counts = np.array([np.bincount(x[:, 0].astype(int), minlength=nc) for x in labels])
    return (weights.reshape(1, nc) * class_counts).sum(1)


def _labels(*classes_per_image):
    return [np.array([[c, 0.5, 0.5, 0.1, 0.1] for c in classes], np.float32).reshape(-1, 5)
            for classes in classes_per_image]


def test_image_weights_are_ultralytics_inverse_class_frequency():
    labels = _labels([0, 0, 1], [0], [], [2, 2, 2, 0], [1])
    np.testing.assert_allclose(image_weights(labels, 4), _ultralytics_image_weights(labels, 4),
                               rtol=1e-12)
    np.testing.assert_allclose(class_weights(labels, 4).sum(), 1.0)
    assert image_weights(labels, 4)[2] == 0  # no boxes: never drawn


def test_weighted_order_repeats_from_seed_and_epoch_and_favours_rare_classes():
    labels = _labels(*([[0]] * 18), [1], [1, 0])  # class 1 is rare
    weights = image_weights(labels, 2)

    def sampler(seed):
        return EpochBatchSampler(len(labels), 4, True, False, seed=seed, weights=weights)

    assert _batches(sampler(0), 3) == _batches(sampler(0), 3)
    assert _batches(sampler(0), 3) != _batches(sampler(0), 4)
    assert _batches(sampler(0), 3) != _batches(sampler(1), 3)
    drawn = [i for epoch in range(50) for batch in _batches(sampler(0), epoch)
             for _, i in batch]
    assert len(drawn) == 50 * len(labels)
    rare = sum(i in (18, 19) for i in drawn) / len(drawn)
    assert rare > 0.5  # 2 images of 20, drawn more than half the time
    assert _batches(EpochBatchSampler(20, 4, True, False, seed=0), 3) != \
        _batches(sampler(0), 3)  # not the permutation


def test_image_weights_need_a_box(tmp_path):
    from utils.base.errors import InputError
    from utils.data.datasets import YoloDataset, create_dataloader
    files = _rect_set(tmp_path)
    for path in (tmp_path / "labels").iterdir():
        path.write_text("")
    dataset = YoloDataset(files, 5, 64)
    with pytest.raises(InputError, match="--image-weights: none of the 5 training images has"):
        create_dataloader(dataset, 2, 0, shuffle=True, weighted=True)


def test_closed_mosaic_epochs_train_on_single_images_and_the_others_keep_their_bits(tmp_path):
    import torch

    from utils.data.datasets import YoloDataset
    from utils.data.hyp import DEFAULT_HYP, load_hyp
    files = _rect_set(tmp_path)
    hyp = {**load_hyp(DEFAULT_HYP), "mosaic": 1.0}

    def items(epoch, **kw):
        dataset = YoloDataset(files, 5, 64, augment=True, hyp=kw.pop("hyp", hyp), seed=3, **kw)
        return [dataset[(epoch, i)] for i in range(len(dataset))]

    def same(a, b):
        return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[3] == y[3]
                   for x, y in zip(a, b))

    # Before the closed epochs: the items of a run that never closes its mosaic, to the bit.
    assert same(items(1, mosaic_epochs=2), items(1))
    # From them on: what a mosaic probability of 0 gives (the same draws, no mosaic).
    closed, single = items(2, mosaic_epochs=2), items(2, hyp={**hyp, "mosaic": 0.0})
    assert same(closed, single) and not same(closed, items(2))
    # Each image holds one box of class = its index: a single image has at most that one box,
    # a mosaic also the boxes of the three images drawn beside it.
    assert all(labels[:, 1].tolist() in ([], [i]) for i, (_, labels, _, _) in enumerate(closed))
    assert any(len(labels) > 1 for _, labels, _, _ in items(2))
