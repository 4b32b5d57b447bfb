"""Ultralytics ``.data`` files and the image / label files they point at.

    classes=4
    train=shapes/images/train      # a folder of images, or a text file listing them
    valid=shapes/images/val
    names=shapes.names             # one class name a line
    generate=shapes                # ours: build the built-in set here when it is missing
    hyp=hyp.shapes.yaml            # ours: default hyperparameters for this data (--hyp wins)

Relative paths are resolved against the .data file's folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from utils.base.errors import DataConfigError

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
REQUIRED_KEYS = ("classes", "train", "valid", "names")


@dataclass
class DataConfig:
    path: Path
    num_classes: int
    train: Path
    valid: Path
    names: list[str]
    generate: str | None = None
    hyp: Path | None = None  # ours: the hyperparameters recommended for this data
    lines: dict[str, int] = field(default_factory=dict)  # key -> line number, for messages


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def read_text_file(path: Path) -> str:
    """A text file as written by any editor: a UTF-8 byte-order mark (Windows) is dropped;
    CRLF line ends are left to ``splitlines``."""
    return path.read_text(encoding="utf-8-sig")


def read_names(path: Path) -> list[str]:
    """Class names, one a line, spaces inside a name kept ("traffic light")."""
    return [n.strip() for n in read_text_file(path).splitlines() if n.strip()]


def load_data_config(path: str | Path, check_paths: bool = True) -> DataConfig:
    """Read a .data file. Raises DataConfigError naming the file and line of the problem."""
    path = Path(path)
    if not path.is_file():
        raise DataConfigError("file not found (expected an ultralytics .data file with "
                              "classes=, train=, valid=, names=)", path)
    values: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(read_text_file(path).splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise DataConfigError(f"expected 'key=value', got {raw.strip()!r}", path, number)
        key, value = (part.strip() for part in line.split("=", 1))
        values[key] = (value, number)
    for key in REQUIRED_KEYS:
        if key not in values:
            raise DataConfigError(f"missing key {key!r} (a .data file needs "
                                  f"{', '.join(REQUIRED_KEYS)})", path)
    base = path.parent
    classes, line = values["classes"]
    try:
        num_classes = int(classes)
    except ValueError:
        raise DataConfigError(f"classes={classes!r} is not an integer", path, line) from None
    if num_classes <= 0:
        raise DataConfigError(f"classes={num_classes} must be positive", path, line)
    names_path = _resolve(base, values["names"][0])
    if not names_path.is_file():
        raise DataConfigError(f"names file {names_path} does not exist", path,
                              values["names"][1])
    names = read_names(names_path)
    if len(names) != num_classes:
        raise DataConfigError(f"{names_path} lists {len(names)} names but classes={num_classes}",
                              path, values["names"][1])
    config = DataConfig(path, num_classes, _resolve(base, values["train"][0]),
                        _resolve(base, values["valid"][0]), names,
                        values.get("generate", (None, 0))[0],
                        _resolve(base, values["hyp"][0]) if "hyp" in values else None,
                        {k: v[1] for k, v in values.items()})
    if check_paths and config.generate is None:
        for key in ("train", "valid"):
            if not getattr(config, key).exists():
                raise DataConfigError(f"{key}={values[key][0]} does not exist "
                                      f"(resolved to {getattr(config, key)})", path,
                                      values[key][1])
    return config


def list_images(spec: Path, data_file: Path | None = None, line: int | None = None) -> list[Path]:
    """The images of a folder (sorted) or of a list file (one path a line, in its order)."""
    if spec.is_dir():
        files = sorted(p for p in spec.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif spec.is_file():
        files = _read_image_list(spec)
    else:
        raise DataConfigError(f"{spec} does not exist", data_file, line)
    if not files:
        raise DataConfigError(f"no images found in {spec} (expected files ending in "
                              f"{', '.join(IMAGE_SUFFIXES)})", data_file, line)
    return files


def _read_image_list(spec: Path) -> list[Path]:
    """The paths of a list file, in its order. An image named twice is refused: both copies
    would carry one image id, so its detections would be scored against the wrong copy."""
    files: list[Path] = []
    first_line: dict[Path, int] = {}
    for number, raw in enumerate(read_text_file(spec).splitlines(), start=1):
        if not raw.strip():
            continue
        path = _resolve(spec.parent, raw.strip())
        key = path.resolve()
        if key in first_line:
            raise DataConfigError(f"lines {first_line[key]} and {number} both name {key}: list "
                                  "each image once", spec, number)
        first_line[key] = number
        files.append(path)
    return files


def label_path_for(image: Path) -> Path:
    """``.../images/x/0001.png`` -> ``.../labels/x/0001.txt`` (the last ``images`` folder)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def prepare_data(path: str | Path) -> DataConfig:
    """Load a .data file; when it says ``generate=shapes`` and the images are missing, build
    the built-in set first (seconds), then check its paths."""
    config = load_data_config(path, check_paths=False)
    if config.generate is not None:
        if config.generate != "shapes":
            raise DataConfigError(f"generate={config.generate!r} is not known, expected "
                                  "'shapes'", config.path, config.lines.get("generate"))
        from utils.data.shapes import ensure_shapes
        ensure_shapes(config.train.parent.parent)
    return load_data_config(path, check_paths=True)
