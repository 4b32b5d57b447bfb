import hashlib

import cv2
import numpy as np

from utils.data.shapes import generate_shapes, make_image


def test_same_seed_same_pixels_and_labels():
    a_img, a_lab = make_image(0, "train", 7, 128)
    b_img, b_lab = make_image(0, "train", 7, 128)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, _ = make_image(1, "train", 7, 128)
    assert not np.array_equal(a_img, c_img)


def test_labels_are_normalized_and_sized(tmp_path):
    digest = generate_shapes(tmp_path, n_train=6, n_val=2, size=96, seed=0)
    assert len(digest) == 64 and (tmp_path / "DIGEST").read_text().strip() == digest
    files = sorted((tmp_path / "labels" / "train").glob("*.txt"))
    assert len(files) == 6
    for f in files:
        rows = np.loadtxt(f, ndmin=2)
        if rows.size:
            assert ((rows[:, 1:] > 0) & (rows[:, 1:] <= 1)).all()
            assert set(rows[:, 0].astype(int)) <= {0, 1, 2, 3}


def test_digest_is_over_decoded_pixels(tmp_path):
    digest = generate_shapes(tmp_path, n_train=2, n_val=1, size=64, seed=0)
    h = hashlib.sha256()
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            h.update(cv2.imread(str(tmp_path / "images" / split / f"{i:06d}.png")).tobytes())
            h.update((tmp_path / "labels" / split / f"{i:06d}.txt").read_bytes())
    assert h.hexdigest() == digest


def test_an_interrupted_generation_is_generated_again(tmp_path):
    """A set cut short (no DIGEST, files missing) is never used as it is; the whole default set
    (600 images, about 5 s) comes out with the same pixels as on every machine."""
    from utils.data.shapes import DEFAULT_DIGEST, ensure_shapes, is_complete
    root = tmp_path / "shapes"
    generate_shapes(root, n_train=3, n_val=1, size=64)  # what a kill after 4 images leaves
    (root / "DIGEST").unlink()
    assert not is_complete(root)
    ensure_shapes(root)
    assert is_complete(root)
    assert (root / "DIGEST").read_text().strip() == DEFAULT_DIGEST
    assert not (tmp_path / ".shapes.partial").exists()


def _whole(folder):
    return (folder / "DIGEST").is_file()


def _set(folder, text):
    folder.mkdir(parents=True)
    (folder / "DIGEST").write_text(text)
    return folder


def test_a_finished_set_moves_into_place_or_yields_to_one_already_there(tmp_path):
    from utils.data.shapes import move_into_place
    root = tmp_path / "shapes"
    move_into_place(_set(tmp_path / "p1", "first"), root, _whole)
    assert (root / "DIGEST").read_text() == "first" and not (tmp_path / "p1").exists()
    # Another node finished second: the set in place is used, its own copy removed.
    move_into_place(_set(tmp_path / "p2", "second"), root, _whole)
    assert (root / "DIGEST").read_text() == "first" and not (tmp_path / "p2").exists()
    # An interrupted older generation (no DIGEST) is replaced.
    (root / "DIGEST").unlink()
    (root / "images").mkdir()
    move_into_place(_set(tmp_path / "p3", "third"), root, _whole)
    assert (root / "DIGEST").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]


def _generate_when_released(root, gate):
    from utils.data.shapes import ensure_shapes
    gate.wait()
    ensure_shapes(root, n_train=30, n_val=6, size=48, expected=None)


def test_two_processes_generating_at_once_leave_one_whole_set(tmp_path):
    """Two nodes' first processes on one shared filesystem: before, both wrote into one
    .shapes.partial folder (removing each other's files); now each writes its own and the
    first rename wins."""
    import multiprocessing

    from utils.data.shapes import is_complete
    root = tmp_path / "shapes"
    context = multiprocessing.get_context("spawn")
    gate = context.Barrier(2)
    workers = [context.Process(target=_generate_when_released, args=(root, gate))
               for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert is_complete(root, 30, 6)
    expected = generate_shapes(tmp_path / "alone", n_train=30, n_val=6, size=48, seed=0)
    assert (root / "DIGEST").read_text().strip() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone", "shapes"]


def test_a_killed_generators_folder_is_removed(tmp_path):
    import socket

    from utils.data.shapes import ensure_shapes
    dead = tmp_path / f".shapes.partial-{socket.gethostname()}-999999999"
    (dead / "images").mkdir(parents=True)
    ensure_shapes(tmp_path / "shapes", n_train=2, n_val=1, size=32, expected=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]
