"""What detect.py reads: image and video files, folders, globs, ``.txt`` lists of sources, a
webcam by its index, and network streams (rtsp, rtmp, http, https), each as a sequence of
(name, BGR frame).

Files are read whole; a video file that ends has ended. A webcam or a stream has no end of its
own: one that cannot be opened, or stops sending frames, raises :class:`ImageError` naming it
and how many frames were read, so the caller keeps what was processed and exits 2.
"""
from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from utils.base.errors import ImageError, InputError
from utils.data.data_config import IMAGE_SUFFIXES
from utils.data.image_io import load_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://")
# How long OpenCV may try to open a stream, and wait for one frame, before it is said to fail.
STREAM_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Source:
    """One thing to read frames from: ``kind`` is "image", "video", "webcam" or "stream";
    ``spec`` the path, the webcam index or the URL."""
    kind: str
    spec: str

    @property
    def stem(self) -> str:
        if self.kind == "webcam":
            return f"webcam{self.spec}"
        if self.kind == "stream":
            return "stream"
        return Path(self.spec.split("?")[0]).stem

    @property
    def is_live(self) -> bool:
        return self.kind in ("webcam", "stream")


def _file_source(path: Path) -> Source:
    return Source("video" if path.suffix.lower() in VIDEO_SUFFIXES else "image", str(path))


def list_sources(source: str, _from_list: Path | None = None) -> list[Source]:
    """An image or video file, a folder (sorted), a glob pattern, a webcam index (``0``), a
    stream URL, or a ``.txt`` file holding one such source a line (relative paths from the
    list's folder; nested lists refused)."""
    if source.isdigit():
        return [Source("webcam", source)]
    if source.lower().startswith(STREAM_SCHEMES):
        # A video file served over http ends as a file does; anything else is a live stream.
        is_file = source.lower().split("?")[0].endswith(VIDEO_SUFFIXES)
        return [Source("video" if is_file else "stream", source)]
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".txt":
        if _from_list is not None:
            raise InputError("a source list names another list; give the sources themselves",
                             _from_list)
        return _sources_of_list(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(source))
    if not files:
        where = f"{_from_list}: " if _from_list else ""
        raise InputError(f"{where}--source {source}: no images, videos or streams found (expected "
                         "a file, folder, glob, webcam index, rtsp/rtmp/http(s) URL or .txt "
                         "list)")
    return [_file_source(p) for p in files]


def _sources_of_list(path: Path) -> list[Source]:
    sources = []
    for line in path.read_text().splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        is_path = not (entry.isdigit() or entry.lower().startswith(STREAM_SCHEMES))
        if is_path and not Path(entry).is_absolute():
            entry = str(path.parent / entry)
        sources += list_sources(entry, _from_list=path)
    if not sources:
        raise InputError("the source list is empty", path)
    return sources


def output_stems(sources: list[Source]) -> dict[Source, str]:
    """A distinct output name for each source: its stem, or ``stem_suffix`` when two sources
    share a stem (``a.png``, ``a.jpg``), then a counter when even that repeats (the same name
    in two folders of a glob, two streams), so no result overwrites another."""
    stems = Counter(s.stem for s in sources)

    def suffixed(source: Source) -> str:
        suffix = Path(source.spec.split("?")[0]).suffix.lstrip(".").lower()
        return f"{source.stem}_{suffix}" if suffix else source.stem
    names = {s: s.stem if stems[s.stem] == 1 else suffixed(s) for s in sources}
    taken: Counter = Counter()
    repeats = Counter(names.values())
    for s in sources:
        if repeats[names[s]] > 1:
            taken[names[s]] += 1
            names[s] = f"{names[s]}_{taken[names[s]]}"
    return names


def open_capture(source: Source) -> cv2.VideoCapture:
    """A VideoCapture of a video file, webcam or stream; refused with the reason when OpenCV
    cannot open it (a stream within :data:`STREAM_TIMEOUT_MS`)."""
    if source.kind == "webcam":
        capture = cv2.VideoCapture(int(source.spec))
    elif source.spec.lower().startswith(STREAM_SCHEMES):
        capture = cv2.VideoCapture(source.spec, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
    else:
        capture = cv2.VideoCapture(source.spec)
    if not capture.isOpened():
        what = {"webcam": "no camera at this index", "stream": "OpenCV cannot open this "
                "stream (unreachable, refused, or not a video)"}.get(
            source.kind, "OpenCV cannot open this video")
        raise ImageError(what, source.spec)
    return capture


def frames(source: Source, name: str) -> Iterator[tuple[str, np.ndarray]]:
    """(output name, BGR frame) of an image, or of every frame of a video, webcam or stream."""
    if source.kind == "image":
        yield name, load_image(Path(source.spec))
        return
    yield from capture_frames(open_capture(source), name, source)


def capture_frames(capture: cv2.VideoCapture, name: str, source: Source
                   ) -> Iterator[tuple[str, np.ndarray]]:
    """Frames until the capture ends. A video file's end is its end; a webcam or stream that
    stops sending is an error, raised after the frames it did send."""
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield f"{name}_{index:06d}", frame
            index += 1
    finally:
        capture.release()
    if source.is_live:
        raise ImageError(f"the {source.kind} stopped sending frames after {index} "
                         f"(those are kept)", source.spec)
