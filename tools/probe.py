"""Find the first layer where two settings part: one forward and backward pass of one fixed
batch from a checkpoint, layer by layer.

    python -m tools.probe runs/train/exp/weights/last.pt --a "threads=1" --b "threads=2"
    python -m tools.probe last.pt --a "device=cpu" --b "device=cuda,tf32=1"
    python -m tools.probe last.pt --a "upsample=nn" --b "upsample=deterministic"
    python -m tools.probe last.pt --a "device=cuda,repro=0" --repeat   # A against itself

Settings (comma separated key=value): device (cpu, cuda, cuda:N), threads (int),
repro (1: deterministic kernels; 0: fast ones), upsample (nn | deterministic), tf32 (0 | 1),
channels_last (0 | 1), portable (0 | 1: CPU convolutions through ATen and MKL as --portable
runs them; its kernel variables take effect only when set before the interpreter starts),
perturb (a layer index: adds 1e-6 of its scale to that layer's output, to see how one
rounding-sized change grows), precision (fp32 | bf16 | fp16: the forward pass under autocast,
as the training ran it). Unset keys: cpu, current threads, the run's repro, upsample, precision
and portable, tf32 0, channels_last 1. The model's input is compared too: when it already
differs (another device's conversion of the pixels), the report says so first.

Exit status: 0 every layer matched, 1 a difference was found, 2 bad input.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from utils.base.errors import InputError, report_input_error
from utils.base.repro import configure_determinism
from utils.core.loss import yolo_loss
from utils.data.data_config import list_images, prepare_data
from utils.data.datasets import YoloDataset, collate
from utils.data.hyp import scale_hyp
from utils.data.inputs import to_model_input
from utils.engine.checkpoint import load_checkpoint, load_state_checked
from utils.engine.precision import PRECISIONS, autocast_factory, forward_context

KEYS = ("device", "threads", "repro", "upsample", "tf32", "channels_last", "perturb",
        "precision", "portable")


def parse_setting(text: str) -> dict:
    setting = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in KEYS:
            raise InputError(f"setting {part!r}: expected key=value with key one of {KEYS}")
        if key in ("threads", "repro", "tf32", "channels_last", "perturb", "portable"):
            try:
                setting[key] = int(value)
            except ValueError:
                raise InputError(f"setting {part!r}: {key} takes an integer") from None
        elif key == "upsample" and value not in ("nn", "deterministic"):
            raise InputError(f"setting {part!r}: upsample is 'nn' or 'deterministic'")
        elif key == "precision" and value not in PRECISIONS:
            raise InputError(f"setting {part!r}: precision is one of {PRECISIONS}")
        else:
            setting[key] = value
    if setting.get("device", "cpu").startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"setting {text!r}: no CUDA device here")
    return setting


@dataclass
class Trace:
    """What one pass recorded, per layer of the model's module_list."""
    outputs: list[torch.Tensor] = field(default_factory=list)
    output_grads: dict[int, torch.Tensor] = field(default_factory=dict)
    param_grads: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    loss: float = 0.0
    model_input: torch.Tensor | None = None  # what layer 0 reads, on the CPU
    precision: str = "fp32"
    types: list[str] = field(default_factory=list)
    sources: list[list[int]] = field(default_factory=list)  # per layer, the layers it reads


def run_pass(ckpt: dict, images: torch.Tensor, targets: torch.Tensor, setting: dict) -> Trace:
    """One forward and backward pass under ``setting``; everything recorded on the CPU."""
    from models import Darknet

    args = ckpt["args"]
    repro = bool(setting.get("repro", args.get("repro", False)))
    precision = setting.get("precision", args.get("precision", "fp32"))
    portable = bool(setting.get("portable", args.get("portable", False)))
    configure_determinism(repro, setting.get("threads"), portable=portable)
    tf32 = bool(setting.get("tf32", 0))
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    upsample = {"nn": "nearest", "deterministic": "deterministic"}.get(
        setting.get("upsample"), ckpt.get("upsample", "nearest"))
    device = torch.device(setting.get("device", "cpu"))
    model = Darknet(ckpt["cfg_path"], num_classes=ckpt["num_classes"], upsample=upsample,
                    cfg_text=ckpt["cfg_text"])
    load_state_checked(model, ckpt["model"], "checkpoint")
    # A run's own layout: --portable trains in NCHW (utils.engine.plan's memory_format).
    layout = torch.channels_last if setting.get("channels_last", int(not portable)) \
        else torch.contiguous_format
    model.to(device, memory_format=layout).train()
    types = [type(m).__name__ if not isinstance(m, torch.nn.Sequential)
             else "+".join(type(c).__name__ for c in m) for m in model.module_list]
    trace = Trace(precision=precision, types=types, sources=layer_sources(model))
    perturb = setting.get("perturb")

    def forward_hook(index):
        def hook(_module, _inputs, output):
            if isinstance(output, tuple):  # a YOLO layer in eval mode; not used here
                output = output[0]
            if index == perturb:
                output = output + output.detach().abs().max() * 1e-6
            trace.outputs.append(output.detach().cpu().clone())
            if output.requires_grad:
                output.register_hook(lambda g: trace.output_grads.__setitem__(
                    index, g.detach().cpu().clone()))
            return output
        return hook

    handles = [m.register_forward_hook(forward_hook(i)) for i, m in enumerate(model.module_list)]
    hyp = scale_hyp(ckpt["hyp"], ckpt["num_classes"], len(model.head_indices), images.shape[-1],
                    ckpt["hyp"]["nbs"])
    x = to_model_input(images, device, layout)
    trace.model_input = x.detach().cpu().contiguous()
    with forward_context(autocast_factory(precision, device)):
        preds = model(x)
    loss, _ = yolo_loss([p.float() for p in preds], targets.to(device), model.anchors(),
                        model.strides(), hyp,
                        label_smoothing=hyp.get("label_smoothing", 0.0),  # 0: from before it
                        fixed_order=portable, xy_scales=model.xy_scales())
    loss.backward()
    for h in handles:
        h.remove()
    trace.loss = loss.item()
    for i, m in enumerate(model.module_list):
        grads = [p.grad.detach().cpu().clone() for p in m.parameters() if p.grad is not None]
        if grads:
            trace.param_grads[i] = grads
    return trace


def digest(t: torch.Tensor) -> str:
    """12 hex digits of the tensor's bytes: equal digests, equal bits."""
    return hashlib.sha256(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                          ).hexdigest()[:12]


def _diff(a: torch.Tensor | None, b: torch.Tensor | None) -> tuple[float, float]:
    """(largest absolute difference, that relative to the largest magnitude)."""
    if a is None or b is None:
        return (0.0, 0.0) if a is None and b is None else (float("inf"), float("inf"))
    a, b = a.double(), b.double()
    if a.shape != b.shape:
        return float("inf"), float("inf")
    d = (a - b).abs().max().item() if a.numel() else 0.0
    scale = max(a.abs().max().item() if a.numel() else 0.0, 1e-30)
    return d, d / scale


def compare(a: Trace, b: Trace) -> dict:
    """Per layer differences and the first layer whose output differs on identical inputs."""
    rows = []
    for i, (oa, ob) in enumerate(zip(a.outputs, b.outputs)):
        grads_a, grads_b = a.param_grads.get(i, []), b.param_grads.get(i, [])
        param = max((_diff(x, y) for x, y in zip(grads_a, grads_b)), default=(0.0, 0.0))
        rows.append({"layer": i, "type": a.types[i], "digest_a": digest(oa),
                     "digest_b": digest(ob), "out": _diff(oa, ob),
                     "out_grad": _diff(a.output_grads.get(i), b.output_grads.get(i)),
                     "param_grad": param, "has_params": bool(grads_a or grads_b)})
    input_diff = _diff(a.model_input, b.model_input)
    first_forward = None
    for row in rows:
        sources = a.sources[row["layer"]]
        inputs_same = all(rows[j]["out"][0] == 0 for j in sources) and (
            bool(sources) or input_diff[0] == 0)
        if row["out"][0] != 0 and inputs_same:
            first_forward = row
            break
    # Backward runs from the last layer to the first: the highest-index layer whose output
    # gradient differs is where the difference entered (from the loss or its consumer).
    grad_differs = [r for r in rows if r["out_grad"][0] != 0 or r["param_grad"][0] != 0]
    first_backward = max(grad_differs, key=lambda r: r["layer"]) if grad_differs else None
    return {"rows": rows, "first_forward": first_forward, "first_backward": first_backward,
            "loss": (a.loss, b.loss), "input": input_diff,
            "precision": (a.precision, b.precision),
            "matched": not grad_differs and not any(r["out"][0] for r in rows)
            and a.loss == b.loss and input_diff[0] == 0}


def layer_sources(model) -> list[list[int]]:
    """Per layer of a Darknet, the indices of the layers whose outputs it reads."""
    from models.layers import Route, Shortcut
    sources = []
    for i, m in enumerate(model.module_list):
        if isinstance(m, Route):
            sources.append(list(m.layers))
        elif isinstance(m, Shortcut):
            sources.append([i - 1, m.source])
        else:
            sources.append([i - 1] if i else [])
    return sources


def format_table(result: dict) -> str:
    lines = [f"{'layer':>5} {'type':<34} {'output max|d|':>13} {'rel':>9} "
             f"{'out-grad max|d|':>15} {'param-grad max|d|':>17}  digests a / b"]
    for r in result["rows"]:
        lines.append(f"{r['layer']:>5} {r['type'][:34]:<34} {r['out'][0]:>13.3g} "
                     f"{r['out'][1]:>9.2g} {r['out_grad'][0]:>15.3g} {r['param_grad'][0]:>17.3g}"
                     f"  {r['digest_a']} / {r['digest_b']}")
    la, lb = result["loss"]
    lines.append(f"loss: a {la!r}  b {lb!r}; precision: a {result['precision'][0]}, "
                 f"b {result['precision'][1]}")
    if result["input"][0]:
        lines.append(f"input: the input already differs (max |d| {result['input'][0]:.3g}): "
                     "every layer after it inherits that difference")
    if result["matched"]:
        lines.append("every layer matched: outputs, gradients and loss identical to the bit")
        return "\n".join(lines)
    f = result["first_forward"]
    if f:
        lines.append(f"forward: first difference at layer {f['layer']} ({f['type']}) although "
                     f"its input was identical: max |d| {f['out'][0]:.3g} "
                     f"(relative {f['out'][1]:.2g})")
    else:
        lines.append("forward: every layer output identical")
    b = result["first_backward"]
    if b:
        cause = (" (a consequence: the forward pass already differed)" if f else
                 " although every forward output was identical: the backward kernels differ")
        lines.append(f"backward: gradients first differ at layer {b['layer']} ({b['type']}) "
                     f"counting from the loss: output-grad max |d| {b['out_grad'][0]:.3g}, "
                     f"param-grad max |d| {b['param_grad'][0]:.3g}{cause}")
    return "\n".join(lines)


def plot_probe(result: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [r["layer"] for r in result["rows"]]
    fig, ax = plt.subplots(figsize=(10, 4), tight_layout=True)
    for key, label in (("out", "layer output"), ("out_grad", "gradient at output")):
        values = [max(r[key][0], 1e-30) for r in result["rows"]]
        ax.semilogy(layers, values, marker=".", label=label)
    with_params = [r for r in result["rows"] if r["has_params"]]  # convs; pools have none
    ax.semilogy([r["layer"] for r in with_params],
                [max(r["param_grad"][0], 1e-30) for r in with_params], marker="o",
                linestyle=":", label="parameter gradient (layers with parameters)")
    ax.set_xlabel("layer (forward order; backward runs right to left)")
    ax.set_ylabel("max |a - b| (1e-30 = identical)")
    ax.legend()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Find the first layer where two settings part.")
    parser.add_argument("checkpoint", help="a last.pt / best.pt written by train.py")
    parser.add_argument("--a", default="", help="setting A, e.g. 'device=cpu,threads=1'")
    parser.add_argument("--b", default=None, help="setting B (default: same as A)")
    parser.add_argument("--repeat", action="store_true", help="run setting A twice")
    parser.add_argument("--data", default=None, help=".data file (default: the run's)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", default=".", help="folder for probe.png")
    return parser


def fixed_batch(ckpt: dict, data_path: str | None, batch_size: int):
    data = prepare_data(data_path or ckpt["data"])
    files = list_images(data.train, data.path)[:batch_size]
    dataset = YoloDataset(files, data.num_classes, ckpt["img_size"],
                          single_cls=ckpt["args"].get("single_cls", False))
    images, targets, _, _ = collate([dataset[i] for i in range(len(dataset))])
    return images, targets


def main(args: argparse.Namespace) -> int:
    try:
        ckpt = load_checkpoint(args.checkpoint)
        setting_a = parse_setting(args.a)
        setting_b = setting_a if args.repeat or args.b is None else parse_setting(args.b)
        images, targets = fixed_batch(ckpt, args.data, args.batch_size)
    except InputError as err:
        return report_input_error(err)
    threads = torch.get_num_threads()
    trace_a = run_pass(ckpt, images, targets, setting_a)
    torch.set_num_threads(threads)
    trace_b = run_pass(ckpt, images, targets, setting_b)
    torch.set_num_threads(threads)
    result = compare(trace_a, trace_b)
    print(f"A: {setting_a or 'defaults'}\nB: {setting_b or 'defaults'}"
          f"{' (repeat of A)' if args.repeat else ''}")
    print(format_table(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_probe(result, out / "probe.png")
    print(f"plot: {out / 'probe.png'}")
    return 0 if result["matched"] else 1


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
