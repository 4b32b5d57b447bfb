"""Read darknet ``.cfg`` files into a list of section dicts, checking sections and keys.

Every section dict holds ``type`` (the section name) and ``line`` (its 1-based line number in
the file) beside its keys, so later errors can point at the right place.
"""
from __future__ import annotations

from pathlib import Path

from utils.base.errors import CfgError

# The keys each section may carry. Darknet ignores many of them; we accept and ignore them too,
# but an unknown key is most often a typo, so it is refused.
KNOWN_KEYS: dict[str, set[str]] = {
    "net": {"batch", "subdivisions", "width", "height", "channels", "momentum", "decay", "angle",
            "saturation", "exposure", "hue", "learning_rate", "burn_in", "max_batches", "policy",
            "steps", "scales", "mosaic", "flip", "max_chart_loss", "min_crop", "max_crop"},
    "convolutional": {"batch_normalize", "filters", "size", "stride", "pad", "padding",
                      "activation", "groups"},
    "maxpool": {"size", "stride"},
    "upsample": {"stride"},
    "route": {"layers"},
    "shortcut": {"from", "activation"},
    "yolo": {"mask", "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh",
             "random", "scale_x_y", "iou_thresh", "iou_normalizer", "cls_normalizer",
             "iou_loss", "nms_kind", "beta_nms", "max_delta", "counters_per_class",
             "label_smooth_eps", "obj_normalizer", "max"},
}
ACTIVATIONS = {"leaky", "linear", "relu", "mish", "swish", "logistic"}


def parse_cfg(path: str | Path) -> list[dict]:
    """Parse a darknet cfg file. Raises :class:`CfgError` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise CfgError("cfg file not found (expected a darknet .cfg file)", path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise CfgError(f"not a text file ({err.reason})", path) from None
    return parse_cfg_text(text, path)


def parse_cfg_text(text: str, path: str | Path = "<cfg>") -> list[dict]:
    sections: list[dict] = []
    for line_number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"malformed section header {raw.strip()!r}, expected [name]",
                               path, line_number)
            kind = line[1:-1].strip()
            if kind not in KNOWN_KEYS:
                raise CfgError(f"unknown section [{kind}], expected one of "
                               f"{sorted(KNOWN_KEYS)}", path, line_number)
            sections.append({"type": kind, "line": line_number})
            continue
        if "=" not in line:
            raise CfgError(f"expected 'key=value', got {raw.strip()!r}", path, line_number)
        if not sections:
            raise CfgError("key before the first [section]", path, line_number)
        key, value = (part.strip() for part in line.split("=", 1))
        section = sections[-1]
        if key not in KNOWN_KEYS[section["type"]]:
            raise CfgError(f"unknown key {key!r} in [{section['type']}], expected one of "
                           f"{sorted(KNOWN_KEYS[section['type']])}", path, line_number)
        if not value:
            raise CfgError(f"key {key!r} has no value", path, line_number)
        section[key] = value
        section.setdefault("key_lines", {})[key] = line_number
    if not sections or sections[0]["type"] != "net":
        raise CfgError("a darknet cfg must start with a [net] section", path, 1)
    if len(sections) == 1:
        raise CfgError("the cfg has no layers after [net]", path, 1)
    return sections


def get_int(section: dict, key: str, path, default: int | None = None) -> int:
    """An integer value of ``section``; raises a CfgError that names the line when it is not one."""
    if key not in section:
        if default is None:
            raise CfgError(f"[{section['type']}] is missing the key {key!r}", path,
                           section["line"])
        return default
    try:
        return int(section[key])
    except ValueError:
        raise CfgError(f"{key}={section[key]!r} is not an integer",
                       path, section["key_lines"][key]) from None


def _get_list(section: dict, key: str, path, kind: type, what: str) -> list:
    if key not in section:
        raise CfgError(f"[{section['type']}] is missing the key {key!r}", path, section["line"])
    try:
        return [kind(v) for v in section[key].split(",") if v.strip()]
    except ValueError:
        raise CfgError(f"{key}={section[key]!r} is not a list of {what}",
                       path, section["key_lines"][key]) from None


def get_int_list(section: dict, key: str, path) -> list[int]:
    """A comma separated list of integers (``layers``, ``mask``); ``1.5`` is refused, not
    truncated."""
    return _get_list(section, key, path, int, "integers")


def get_float_list(section: dict, key: str, path) -> list[float]:
    """A comma separated list of numbers (``anchors``: k-means anchors are fractional)."""
    return _get_list(section, key, path, float, "numbers")


def source_layer(index: int, current: int, section: dict, key: str, path) -> int:
    """The absolute layer a route's or shortcut's ``index`` (relative when negative) names,
    which must come before layer ``current``."""
    absolute = index + current if index < 0 else index
    if not 0 <= absolute < current:
        raise CfgError(f"{key}={index} points at layer {absolute}, but only layers 0..{current - 1}"
                       " come before this one", path, section["key_lines"][key])
    return absolute


def count_yolo_layers(sections: list[dict], path) -> int:
    """The number of [yolo] layers, after checking that every route and shortcut reads layers
    before it and that there is at least one: what must hold before anything (the loss gains'
    scaling, the model) relies on the cfg's structure."""
    layers = sections[1:]
    for i, s in enumerate(layers):
        if s["type"] == "route":
            for index in get_int_list(s, "layers", path):
                source_layer(index, i, s, "layers", path)
        elif s["type"] == "shortcut":
            source_layer(get_int(s, "from", path), i, s, "from", path)
    heads = sum(1 for s in layers if s["type"] == "yolo")
    if not heads:
        raise CfgError("the cfg has no [yolo] layer", path, sections[-1]["line"])
    return heads
