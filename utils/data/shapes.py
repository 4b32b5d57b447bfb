"""The built-in dataset: coloured geometric shapes on textured backgrounds.

Generated on first use by a seeded generator; each image comes from its own generator seeded by
(seed, split, index), so the pixels and labels are the same on every machine. PNG bytes may
differ between zlib versions, so the digest is taken over decoded pixels and label text.

    python -m utils.data.shapes data/shapes      # (re)generate the default set and print its digest
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import shutil
import socket
import warnings
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES = ("circle", "rectangle", "triangle", "star")
# Digest of the default set (seed 0, 500 train + 100 val images of 256 px).
DEFAULT_DIGEST = "a797e98cfa3f5b2c9cd9f2d8db63d3ad8ed9121eb2eab94c67dd879087566b79"


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A two-colour linear gradient in a random direction, plus noise and a few thin lines."""
    c0, c1 = rng.integers(0, 256, size=(2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(0.0, 1.0, size)
    t = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    img = img + rng.normal(0.0, 6.0, size=img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        p0, p1 = rng.integers(0, size, size=(2, 2))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), color, 1, cv2.LINE_8)
    return img


def _shape_points(kind: int, cx: float, cy: float, r: float, angle: float,
                  aspect: float) -> np.ndarray:
    """Vertices (K, 2) of a polygonal shape of radius ``r`` centred at (cx, cy)."""
    if kind == 1:  # rectangle of the given aspect ratio
        w, h = r, r * aspect
        base = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    elif kind == 2:  # triangle
        a = np.deg2rad([90, 210, 330])
        base = np.stack([np.cos(a), -np.sin(a)], 1) * r
    else:  # five-pointed star
        a = np.deg2rad(90 + 36 * np.arange(10))
        radius = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        base = np.stack([np.cos(a) * radius, -np.sin(a) * radius], 1)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return base @ rot.T + np.array([cx, cy])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area (xyxy): 1 when one box holds the other."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def make_image(seed: int, split: str, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W, 3) BGR uint8 and its labels (N, 5): class, x, y, w, h normalized."""
    rng = np.random.default_rng([seed, {"train": 0, "val": 1}[split], index])
    img = _background(rng, size)
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, 7))):
        kind = int(rng.integers(0, len(CLASS_NAMES)))
        r = rng.uniform(0.04, 0.22) * size
        cx, cy = rng.uniform(0, size, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        aspect = rng.uniform(0.4, 1.0)
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if kind == 0:
            pts = None
            center, radius = (int(round(cx)), int(round(cy))), int(round(r))
            box = np.array([center[0] - radius, center[1] - radius,
                            center[0] + radius + 1, center[1] + radius + 1], dtype=float)
        else:
            pts = np.rint(_shape_points(kind, cx, cy, r, angle, aspect)).astype(np.int32)
            box = np.array([pts[:, 0].min(), pts[:, 1].min(),
                            pts[:, 0].max() + 1, pts[:, 1].max() + 1], dtype=float)
        clipped = np.clip(box, 0, size)
        visible = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1])
        # Skip shapes mostly outside the image or hiding an earlier one too much.
        if visible < 0.6 * (box[2] - box[0]) * (box[3] - box[1]):
            continue
        if any(_overlap(clipped, b) > 0.4 for b in boxes):
            continue
        if pts is None:
            cv2.circle(img, center, radius, color, -1, cv2.LINE_8)
        else:
            cv2.fillPoly(img, [pts], color, cv2.LINE_8)
        boxes.append(clipped)
        x1, y1, x2, y2 = clipped / size
        labels.append([kind, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    return img, np.array(labels, dtype=np.float64).reshape(-1, 5)


def label_text(labels: np.ndarray) -> str:
    return "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)


def generate_shapes(root: str | Path, n_train: int = 500, n_val: int = 100, size: int = 256,
                    seed: int = 0) -> str:
    """Write ``root/images/{train,val}/*.png`` and ``root/labels/...txt``; return the digest of
    the decoded pixels and label text (hex SHA-256)."""
    root = Path(root)
    digest = hashlib.sha256()
    for split, count in (("train", n_train), ("val", n_val)):
        image_dir, label_dir = root / "images" / split, root / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, labels = make_image(seed, split, i, size)
            text = label_text(labels)
            cv2.imwrite(str(image_dir / f"{i:06d}.png"), img)
            (label_dir / f"{i:06d}.txt").write_text(text)
            digest.update(img.tobytes())
            digest.update(text.encode())
    (root / "DIGEST").write_text(digest.hexdigest() + "\n")
    return digest.hexdigest()


def is_complete(root: str | Path, n_train: int = 500, n_val: int = 100) -> bool:
    """Whether ``root`` holds a whole generated set: its DIGEST (written last) and every image
    and label file. An interrupted generation has no DIGEST or fewer files."""
    root = Path(root)
    if not (root / "DIGEST").is_file():
        return False
    for split, count in (("train", n_train), ("val", n_val)):
        for folder, suffix in (("images", ".png"), ("labels", ".txt")):
            if len(list((root / folder / split).glob(f"*{suffix}"))) != count:
                return False
    return True


def ensure_shapes(root: str | Path, n_train: int = 500, n_val: int = 100, size: int = 256,
                  expected: str | None = DEFAULT_DIGEST) -> None:
    """Make sure the default set is whole under ``root``: generate it when it is missing or
    incomplete, and say when its digest is not ``expected`` (the known one).

    Each generating process writes a folder of its own (``.shapes.partial-HOST-PID``) and
    renames it into place in one step, so an interrupted generation never passes for a set, and
    two processes generating at once (two nodes on one shared filesystem) never write into one
    folder: the second to finish finds a whole set in place and uses it."""
    root = Path(root)
    if not is_complete(root, n_train, n_val):
        print(f"Generating the built-in shapes dataset in {root} ...", flush=True)
        _remove_dead_partials(root)
        partial = root.with_name(f".{root.name}.partial-{_owner()}")
        shutil.rmtree(partial, ignore_errors=True)
        generate_shapes(partial, n_train, n_val, size)
        move_into_place(partial, root, lambda folder: is_complete(folder, n_train, n_val))
    digest = (root / "DIGEST").read_text().strip()
    if expected is not None and digest != expected:
        warnings.warn(f"the shapes set in {root} has digest {digest}, expected {expected}:"
                      " this OpenCV or NumPy draws different pixels, so results will not match "
                      "other machines'", stacklevel=2)


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _remove_dead_partials(root: Path) -> None:
    """The folders this host's killed generators left (their process is gone), and the one
    name every generator used before (``.shapes.partial``)."""
    shutil.rmtree(root.with_name(f".{root.name}.partial"), ignore_errors=True)
    prefix = f".{root.name}.partial-{socket.gethostname()}-"
    for folder in root.parent.glob(f"{prefix}*"):
        pid = folder.name[len(prefix):]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def move_into_place(partial: Path, root: Path, complete) -> None:
    """Rename the finished ``partial`` to ``root`` in one step. When a whole set is already
    there (``complete(root)``: another process placed it first) it is used and ``partial``
    removed; an incomplete one (an interrupted older generation) is moved aside and removed
    first, unless it turns out whole by then (placed meanwhile), when it is put back."""
    for _ in range(5):
        try:
            os.rename(partial, root)  # atomic; refused when root is a folder with files
            return
        except OSError:
            if complete(root):
                shutil.rmtree(partial, ignore_errors=True)
                return
        aside = root.with_name(f".{root.name}.stale-{_owner()}")
        try:
            os.rename(root, aside)
        except FileNotFoundError:
            continue  # moved meanwhile: try again
        if complete(aside):  # another process's set, placed after our look: keep it
            with contextlib.suppress(OSError):
                os.rename(aside, root)
                shutil.rmtree(partial, ignore_errors=True)
                return
        shutil.rmtree(aside, ignore_errors=True)
    raise RuntimeError(f"could not move the generated set {partial} to {root}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="data/shapes")
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args: argparse.Namespace) -> None:
    digest = generate_shapes(args.root, args.train, args.val, args.size, args.seed)
    print(f"{args.root}: {args.train} train + {args.val} val images, digest {digest}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
