"""Reading image files with OpenCV, refusing the ones that would fail later.

Grey and RGBA images are converted to 3-channel BGR (the alpha channel dropped). The EXIF
orientation is applied, so a phone photo comes out upright, as viewers and labelling tools
show it, and its labels fit. A zero-byte file, a file whose bytes are not an image, or a
truncated JPEG / PNG is reported with the reason, also a JPEG cut short that still ends in its
end marker: the decoder fills the missing part grey with only a note on stderr that names no
file, so that note is caught and the image refused under its name. Any other decoder note is
passed on, prefixed with the file's name.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from utils.base.errors import ImageError

_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"
# Not IMREAD_UNCHANGED, which skips the EXIF orientation: any depth and colour layout, oriented.
_DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
# libjpeg's notes when the data runs out before the image does (the rest is filled grey).
_JPEG_CUT_NOTES = ("premature end", "unexpected end")


def limit_opencv_threads(_worker_id: int | None = None) -> None:
    """Keep OpenCV to the calling thread. Otherwise it starts its own thread pool in every
    DataLoader worker, fighting torch's threads for the cores. Usable as a worker_init_fn."""
    cv2.setNumThreads(0)


def image_problem(path: Path, data: bytes) -> str | None:
    """Why ``data`` (the bytes of ``path``) is not a usable image, or None."""
    if not data:
        return "zero-byte file"
    if data[:3] == b"\xff\xd8\xff":
        # Trailing padding after the end marker happens in the wild; a missing marker is a cut.
        if _JPEG_END not in data[-64:]:
            return "truncated JPEG (no end-of-image marker)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if _PNG_END not in data[-32:]:
            return "truncated PNG (no IEND chunk)"
    return None


def _decode_with_notes(data: bytes) -> tuple[np.ndarray | None, str]:
    """cv2.imdecode of ``data``, and what the decoder wrote to stderr meanwhile (libjpeg and
    libpng write their warnings there, to file descriptor 2, not through Python). A file, not a
    pipe, takes them, so a decoder with much to say can never block on a full pipe."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as notes:
        saved = os.dup(2)
        os.dup2(notes.fileno(), 2)
        try:
            img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _DECODE_FLAGS)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        notes.seek(0)
        return img, notes.read().decode(errors="replace")


def load_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as (H, W, 3) BGR uint8. Raises ImageError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(f"cannot read: {err.strerror}", path) from None
    problem = image_problem(path, data)
    if problem:
        raise ImageError(problem, path)
    img, notes = _decode_with_notes(data)
    if img is None:
        raise ImageError("not an image OpenCV can decode", path)
    if notes:
        if data[:2] == b"\xff\xd8" and any(n in notes.lower() for n in _JPEG_CUT_NOTES):
            raise ImageError(f"JPEG data cut short, the decoder says {notes.strip()!r} (its "
                             "lower part would be grey)", path)
        sys.stderr.write(f"{path}: {notes.strip()}\n")
    if img.dtype == np.uint16:  # 16-bit PNG / TIFF: keep the high byte
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {img.dtype}, expected 8 or 16 bit", path)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


# Formats whose size and EXIF orientation Pillow reads from the header as load_image orients
# them (checked in tests/utils/data/test_image_io.py); others (TIFF's orientation, for one,
# Pillow reports otherwise) are decoded.
_HEADER_FORMATS = ("JPEG", "PNG", "WEBP")
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the image a quarter


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of the image at ``path`` as :func:`load_image` gives it (EXIF
    orientation applied): from the file's header for JPEG, PNG and WebP (no pixels decoded, so
    a whole training set's sizes take a moment), else by decoding it. Raises ImageError when
    the file is no image; an image whose header reads but whose pixels do not is only found
    by :func:`load_image`."""
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib
    try:
        with Image.open(path) as img:
            if img.format in _HEADER_FORMATS:
                width, height = img.size
                # Only EXIF the header holds: Pillow would decode a PNG to look further.
                turned = ("exif" in img.info
                          and img.getexif().get(0x0112, 1) in _SWAPPING_ORIENTATIONS)
                return (width, height) if turned else (height, width)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        pass  # load_image says why, or reads what Pillow cannot
    return load_image(path).shape[:2]
