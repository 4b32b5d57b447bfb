"""Build a YOLOv3-family model from a darknet cfg file.

    model = Darknet("cfg/yolov3-tiny.cfg", num_classes=4)   # adapts the yolo heads to 4 classes
    model.train(); outputs = model(images)                # list of [B, A, H, W, 5 + C]
    model.eval();  detections, raw = model(images)        # detections [B, N, 5 + C], xywh pixels
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.cfg_parser import (
    ACTIVATIONS,
    get_float_list,
    get_int,
    get_int_list,
    parse_cfg,
    parse_cfg_text,
    source_layer,
)
from models.layers import RepeatUpsample, Route, Shortcut, YOLOLayer
from utils.base.errors import CfgError, counted

UPSAMPLE_MODES = ("nearest", "deterministic")


def _adapt_classes(sections: list[dict], num_classes: int | None, path) -> list[str]:
    """Set every [yolo] ``classes`` to ``num_classes`` and the filters of the conv feeding it.

    Returns one message per change so the caller can say what it did to the cfg.
    """
    notes = []
    layers = sections[1:]
    for i, section in enumerate(layers):
        if section["type"] != "yolo" or num_classes is None:
            continue
        cfg_classes = get_int(section, "classes", path)
        if cfg_classes == num_classes:
            continue
        mask = get_int_list(section, "mask", path)
        if i == 0 or layers[i - 1]["type"] != "convolutional":
            raise CfgError("a [yolo] layer must follow a [convolutional] layer",
                           path, section["line"])
        conv = layers[i - 1]
        new_filters = len(mask) * (num_classes + 5)
        notes.append(f"yolo layer {i} (line {section['line']}): classes {cfg_classes} -> "
                     f"{num_classes}; conv layer {i - 1} filters {conv.get('filters')} -> "
                     f"{new_filters}")
        section["classes"] = str(num_classes)
        conv["filters"] = str(new_filters)
    return notes


def adapted_cfg_text(cfg_text: str, num_classes: int, path="<cfg>") -> str:
    """``cfg_text`` with its [yolo] ``classes`` and the ``filters`` of the convs feeding them set
    for ``num_classes``, as ``Darknet(num_classes=...)`` adapts it; every other line as it was.
    The cfg a converted model's darknet weights fit, for darknet and for ``--cfg``."""
    sections = parse_cfg_text(cfg_text, path)
    if not _adapt_classes(sections, num_classes, path):
        return cfg_text
    return _write_back(cfg_text, sections, ("classes", "filters"))


def scaled_cfg_text(cfg_text: str, scale_x_y: float, path="<cfg>") -> tuple[str, int]:
    """``cfg_text`` with ``scale_x_y=<value>`` under each [yolo] header whose section sets no
    scale_x_y of its own (those keep theirs), every other line as it was; and the number of
    sections so given it."""
    headers = {s["line"] for s in parse_cfg_text(cfg_text, path)
               if s["type"] == "yolo" and "scale_x_y" not in s}
    lines = cfg_text.splitlines(keepends=True)
    out = []
    for number, line in enumerate(lines, 1):
        out.append(line)
        if number in headers:
            out.append(("" if line.endswith("\n") else "\n") + f"scale_x_y={scale_x_y:g}\n")
    return "".join(out), len(headers)


def _write_back(cfg_text: str, sections: list[dict], keys: tuple[str, ...]) -> str:
    """``cfg_text`` with the lines of ``keys`` whose value in ``sections`` (parsed from that
    text, then changed) differs from the line's rewritten as ``key=value``, indent and comment
    kept; every other line as it was."""
    lines = cfg_text.splitlines(keepends=True)
    for section in sections[1:]:
        for key in keys:
            if key not in section.get("key_lines", {}):
                continue
            index = section["key_lines"][key] - 1
            line = lines[index]
            body, hash_, comment = line.rstrip("\r\n").partition("#")
            if body.split("=", 1)[1].strip() != section[key]:
                indent = body[:len(body) - len(body.lstrip())]
                lines[index] = (f"{indent}{key}={section[key]}" + (f" {hash_}{comment}"
                                if hash_ else "") + line[len(line.rstrip("\r\n")):])
    return "".join(lines)


def _anchor_layout(sections: list[dict], path) -> tuple[list[tuple], list[tuple]]:
    """The anchors the [yolo] layers use, as places: ``(slots, layers)``. A slot is ``(listed,
    i)``, entry i of an ``anchors=`` list (``listed``: its (w, h) pairs) that some layer's mask
    names; layers listing the same anchors share their slots (the usual cfg: one list, the
    masks splitting it). Slots come list by list in the order the lists first appear, each
    list's in index order; ``layers`` holds ``(section, listed, mask)`` per [yolo] layer."""
    layers = []
    used: dict[tuple, set[int]] = {}
    for section in sections[1:]:
        if section["type"] == "yolo":
            pairs, mask = _yolo_anchors(section, path)
            listed = tuple(pairs)
            layers.append((section, listed, mask))
            used.setdefault(listed, set()).update(mask)
    slots = [(listed, i) for listed, indices in used.items() for i in sorted(indices)]
    return slots, layers


def cfg_anchors(cfg_text: str, path="<cfg>") -> tuple[np.ndarray, list[np.ndarray]]:
    """The anchors a cfg's [yolo] layers use: ``(slots [S, 2], per layer its slot indices
    [A_l])``, (w, h) in pixels. A slot is an ``anchors=`` entry that a ``mask`` names (entries
    no mask names are not used); for the usual cfg, one list shared by every layer, the slots
    are that list's used entries in its order. Layer l's anchors are ``slots[indices[l]]``."""
    slots, layers = _anchor_layout(parse_cfg_text(cfg_text, path), path)
    place = {slot: j for j, slot in enumerate(slots)}
    values = np.array([listed[i] for listed, i in slots], dtype=np.float64).reshape(-1, 2)
    return values, [np.array([place[(listed, m)] for m in mask]) for _, listed, mask in layers]


def anchored_cfg_text(cfg_text: str, anchors: np.ndarray, path="<cfg>") -> str:
    """``cfg_text`` with the slots of :func:`cfg_anchors` set to ``anchors`` [S, 2] (in that
    order, written with 2 decimals at most): only ``anchors=`` lines change, masks and
    unused entries stay. The model built from the text uses exactly the values written."""
    sections = parse_cfg_text(cfg_text, path)
    slots, layers = _anchor_layout(sections, path)
    if len(anchors) != len(slots):
        raise ValueError(f"{len(anchors)} anchors for the cfg's {len(slots)} used anchors")
    lists = {listed: list(listed) for listed, _ in slots}
    for (listed, i), (w, h) in zip(slots, np.asarray(anchors, dtype=np.float64).tolist()):
        lists[listed][i] = (float(_number(w)), float(_number(h)))
    for section, listed, _ in layers:
        if lists[listed] != list(listed):  # an unchanged line keeps its own spacing
            section["anchors"] = ",  ".join(f"{_number(w)},{_number(h)}"
                                            for w, h in lists[listed])
    return _write_back(cfg_text, sections, ("anchors",))


def _number(value: float) -> str:
    """A value as the cfg holds it: 2 decimals (a hundredth of a pixel) at most, ``10`` for
    10.0."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


class Darknet(nn.Module):
    """A darknet cfg as a torch module.

    Args:
        cfg: path of a darknet ``.cfg`` file.
        num_classes: when given and different from the cfg's ``classes``, the yolo layers and the
            convs feeding them are resized to it (listed in ``self.adaptations``).
        upsample: ``"nearest"`` (``nn.Upsample``) or ``"deterministic"`` (:class:`RepeatUpsample`).
    """

    def __init__(self, cfg: str | Path, num_classes: int | None = None,
                 upsample: str = "nearest", cfg_text: str | None = None):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.cfg_path = str(cfg)
        # cfg_text: the cfg's content stored in a checkpoint, so a model rebuilds without its file.
        if cfg_text is None and Path(cfg).is_file():
            cfg_text = Path(cfg).read_text()
        self.cfg_text = cfg_text
        self.upsample_mode = upsample
        sections = parse_cfg(cfg) if cfg_text is None else parse_cfg_text(cfg_text, cfg)
        self.adaptations = _adapt_classes(sections, num_classes, cfg)
        self.net_info = sections[0]
        in_channels = get_int(self.net_info, "channels", cfg, default=3)
        self.module_list, self.keep_outputs = self._build(sections[1:], in_channels, cfg, upsample)
        self.head_indices = [i for i, m in enumerate(self.module_list) if isinstance(m, YOLOLayer)]
        if not self.head_indices:
            raise CfgError("the cfg has no [yolo] layer", cfg, sections[-1]["line"])
        classes = {self.module_list[i].num_classes for i in self.head_indices}
        if len(classes) != 1:
            raise CfgError(f"the [yolo] layers disagree on classes: {sorted(classes)}", cfg)
        self.num_classes = classes.pop()
        self._init_head_biases()

    def _init_head_biases(self) -> None:
        """Start the heads at sensible priors (RetinaNet's trick): about 8 objects per 640 px
        image, and class scores near 1/C, instead of 0.5 everywhere. This spares the first
        hundreds of steps that would otherwise only push every objectness score down."""
        with torch.no_grad():
            for i in self.head_indices:
                conv = self.module_list[i - 1].Conv2d
                yolo = self.module_list[i]
                if conv.bias is None:  # a head conv with batch norm: nothing to set
                    continue
                bias = conv.bias.view(yolo.num_anchors, yolo.num_outputs)
                bias[:, 4] += math.log(8 / (640 / yolo.stride) ** 2)
                bias[:, 5:] += math.log(0.6 / (yolo.num_classes - 0.99))

    @staticmethod
    def _build(layers: list[dict], in_channels: int, path, upsample: str):
        modules = nn.ModuleList()
        keep = set()
        out_channels: list[int] = []
        out_strides: list[int] = []
        for i, s in enumerate(layers):
            kind = s["type"]
            in_ch = out_channels[-1] if out_channels else in_channels
            stride_in = out_strides[-1] if out_strides else 1
            if kind == "convolutional":
                filters = get_int(s, "filters", path)
                size = get_int(s, "size", path)
                stride = get_int(s, "stride", path, default=1)
                groups = get_int(s, "groups", path, default=1)
                pad = get_int(s, "pad", path, default=0)
                padding = get_int(s, "padding", path, default=size // 2 if pad else 0)
                bn = get_int(s, "batch_normalize", path, default=0)
                activation = s.get("activation", "logistic")
                if activation not in ACTIVATIONS:
                    raise CfgError(f"activation={activation!r} is not supported, expected one of "
                                   f"{sorted(ACTIVATIONS)}", path, s["key_lines"]["activation"])
                if filters <= 0 or size <= 0 or stride <= 0 or in_ch % groups:
                    raise CfgError("filters, size and stride must be positive and the input "
                                   f"channels ({in_ch}) divisible by groups", path, s["line"])
                m = nn.Sequential()
                m.add_module("Conv2d", nn.Conv2d(in_ch, filters, size, stride, padding,
                                                 groups=groups, bias=not bn))
                if bn:
                    m.add_module("BatchNorm2d", nn.BatchNorm2d(filters, momentum=0.03, eps=1e-4))
                act = {"leaky": nn.LeakyReLU(0.1), "relu": nn.ReLU(), "mish": nn.Mish(),
                       "swish": nn.SiLU(), "logistic": nn.Sigmoid()}.get(activation)
                if act is not None:
                    m.add_module("activation", act)
                out_channels.append(filters)
                out_strides.append(stride_in * stride)
            elif kind == "maxpool":
                size = get_int(s, "size", path)
                stride = get_int(s, "stride", path, default=1)
                pool = nn.MaxPool2d(size, stride, padding=(size - 1) // 2)
                if size == 2 and stride == 1:
                    # yolov3-tiny's 'same' max pool: darknet pads right and bottom only, and
                    # skips the padding (-inf, not 0: a negative border stays negative).
                    m = nn.Sequential(nn.ConstantPad2d((0, 1, 0, 1), float("-inf")),
                                      nn.MaxPool2d(2, 1))
                else:
                    m = pool
                out_channels.append(in_ch)
                out_strides.append(stride_in * stride)
            elif kind == "upsample":
                factor = get_int(s, "stride", path, default=2)
                if factor < 1:
                    raise CfgError(f"stride={factor}: an upsample factor must be an integer of "
                                   "1 or more", path, s["key_lines"].get("stride", s["line"]))
                m = (RepeatUpsample(factor) if upsample == "deterministic"
                     else nn.Upsample(scale_factor=factor, mode="nearest"))
                out_channels.append(in_ch)
                out_strides.append(max(stride_in // factor, 1))
            elif kind == "route":
                sources = [source_layer(v, i, s, "layers", path)
                           for v in get_int_list(s, "layers", path)]
                if not sources:
                    raise CfgError("[route] needs at least one layer", path, s["line"])
                keep.update(sources)
                m = Route(sources)
                out_channels.append(sum(out_channels[j] for j in sources))
                out_strides.append(out_strides[sources[0]])
                if len({out_strides[j] for j in sources}) != 1:
                    raise CfgError(f"[route] joins layers {sources} of different resolutions",
                                   path, s["line"])
            elif kind == "shortcut":
                source = source_layer(get_int(s, "from", path), i, s, "from", path)
                if out_channels[source] != in_ch:
                    raise CfgError(f"[shortcut] adds layer {source} ({out_channels[source]} "
                                   f"channels) to layer {i - 1} ({in_ch} channels)",
                                   path, s["line"])
                keep.add(source)
                m = Shortcut(source)
                out_channels.append(in_ch)
                out_strides.append(stride_in)
            elif kind == "yolo":
                m = _build_yolo(s, i, layers, in_ch, stride_in, path)
                out_channels.append(in_ch)
                out_strides.append(stride_in)
            else:  # parse_cfg only lets [net] through besides the kinds above
                raise CfgError(f"[{kind}] may only appear first", path, s["line"])
            modules.append(m)
        return modules, keep

    @property
    def heads(self) -> list[YOLOLayer]:
        """The [yolo] layers; ``head_indices`` are their positions in ``module_list``."""
        return [self.module_list[i] for i in self.head_indices]

    def anchors(self) -> list[torch.Tensor]:
        """Per yolo layer, its anchors [A, 2] in pixels."""
        return [m.anchors for m in self.heads]

    def strides(self) -> list[int]:
        return [m.stride for m in self.heads]

    def xy_scales(self) -> list[float]:
        """Per yolo layer, its cfg's ``scale_x_y`` (1: YOLOv3's centre decode)."""
        return [m.scale_x_y for m in self.heads]

    def forward(self, x: torch.Tensor):
        outputs: list[torch.Tensor | None] = []
        yolo_outputs = []
        for i, module in enumerate(self.module_list):
            if isinstance(module, Route):
                x = module(outputs)
            elif isinstance(module, Shortcut):
                x = module(x, outputs)
            elif isinstance(module, YOLOLayer):
                yolo_outputs.append(module(x))
            else:
                x = module(x)
            # Only outputs that a later route or shortcut reads are kept alive.
            outputs.append(x if i in self.keep_outputs else None)
        if self.training:
            return yolo_outputs
        detections, raw = zip(*yolo_outputs)
        return torch.cat(detections, dim=1), list(raw)

    def fuse(self) -> "Darknet":
        """Fold each BatchNorm into its convolution (inference only; detections change only by
        float rounding)."""
        for block in self.module_list:
            if isinstance(block, nn.Sequential) and hasattr(block, "BatchNorm2d"):
                block.Conv2d = torch.nn.utils.fusion.fuse_conv_bn_eval(block.Conv2d.eval(),
                                                                      block.BatchNorm2d.eval())
                del block.BatchNorm2d
        return self


def _yolo_anchors(s: dict, path) -> tuple[list[tuple[float, float]], list[int]]:
    """A [yolo] section's ``anchors`` as (w, h) pairs and its ``mask``, checked."""
    mask = get_int_list(s, "mask", path)
    anchors = get_float_list(s, "anchors", path)
    if len(anchors) % 2:
        raise CfgError(f"anchors has {len(anchors)} numbers, expected width,height pairs",
                       path, s["key_lines"]["anchors"])
    if not all(math.isfinite(a) and a > 0 for a in anchors):
        raise CfgError(f"anchors={s['anchors']!r}: every width and height must be a positive "
                       "number of pixels", path, s["key_lines"]["anchors"])
    pairs = list(zip(anchors[0::2], anchors[1::2]))
    bad = [m for m in mask if not 0 <= m < len(pairs)]
    if bad or not mask:
        raise CfgError(f"mask={s['mask']} names anchors {bad or 'none'}, but there are only "
                       f"{len(pairs)} anchors (indices 0..{len(pairs) - 1})",
                       path, s["key_lines"].get("mask", s["line"]))
    return pairs, mask


def _build_yolo(s: dict, i: int, layers: list[dict], in_ch: int, stride: int, path) -> YOLOLayer:
    anchors, mask = _yolo_anchors(s, path)
    pairs = torch.tensor(anchors, dtype=torch.float32).view(-1, 2)
    classes = get_int(s, "classes", path)
    expected = len(mask) * (classes + 5)
    if in_ch != expected:
        raise CfgError(f"[yolo] with {len(mask)} anchors and {classes} classes needs "
                       f"filters={expected} in the conv before it (layer {i - 1}), got {in_ch}",
                       path, s["line"])
    return YOLOLayer(pairs[mask], classes, stride, _scale_x_y(s, path))


def _scale_x_y(s: dict, path) -> float:
    """A [yolo] section's ``scale_x_y`` (1 when absent), checked: a number from 1 (YOLOv3's
    decode) up; 2 is YOLOv4's and yolov5's, which reaches the neighbouring cells."""
    if "scale_x_y" not in s:
        return 1.0
    line = s["key_lines"]["scale_x_y"]
    try:
        value = float(s["scale_x_y"])
    except ValueError:
        raise CfgError(f"scale_x_y={s['scale_x_y']!r} is not a number", path, line) from None
    if not (math.isfinite(value) and value >= 1.0):
        raise CfgError(f"scale_x_y={s['scale_x_y']}: expected a number of at least 1 (1: "
                       "YOLOv3's centre decode, 2: YOLOv4's)", path, line)
    return value


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: Darknet, img_size: int) -> float:
    """Floating point operations of one forward pass at ``img_size`` (2 per multiply-add of the
    convolutions, the usual GFLOPs convention)."""
    flops = 0

    def hook(module: nn.Conv2d, _inputs, output):
        nonlocal flops
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        flops += 2 * kernel * output.numel()

    param = next(model.parameters())
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, img_size, img_size, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return float(flops)


def model_summary(model: Darknet, img_size: int) -> str:
    """One line: layers, parameters, GFLOPs at ``img_size``, and the kind of upsampling."""
    ups = [m for m in model.modules() if isinstance(m, (nn.Upsample, RepeatUpsample))]
    deterministic = sum(isinstance(m, RepeatUpsample) for m in ups)
    upsample_note = (f"{len(ups)} upsample layers, {deterministic} of them deterministic "
                     "(expand+reshape)" if ups else "no upsample layers")
    return (f"Model summary: {len(model.module_list)} layers, {count_parameters(model):,} "
            f"parameters, {count_flops(model, img_size) / 1e9:.3g} GFLOPs at {img_size} px, "
            f"{counted(model.num_classes, 'class')}, {upsample_note}")
