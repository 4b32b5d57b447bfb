"""The roofline of train.py's training step: per layer of the model, forward and backward, the
measured time, the FLOPs and the bytes it moves, and its floor on this machine: the larger of
FLOPs over the measured matrix-multiply rate (at the precision the step computes in) and bytes
over the measured memory bandwidth. The input conversion, the loss, the optimizer and the EMA
are rows of their own. The floors summed are the step's limit; limit / measured is the share
of what the hardware allows that the step achieves. Run through the benchmark:

    python -m tools.benchmark --roofline --cfgs cfg/yolov3-tiny.cfg --img-sizes 224 --batch-size 8

How the time is measured. The step is train.py's own, ``engine.train_one_epoch`` on a
``training_setup.build_training``, observed from outside: hooks on the model, its layers and the
optimizer, and the EMA and the batches handed in through thin wrappers. Hooks rather than
``torch.profiler``: the profiler times operators, but autograd runs a layer's backward
operators long after the layer's ``record_function`` range has closed, so they are not
attributed to it, and its per-operator overhead is a visible share of the small layers. Here a
layer costs two timestamps a pass. Forward: a pre and a post hook per layer. Backward: the CPU
autograd engine runs the graph's nodes in decreasing sequence number, the reverse of the order
the forward made them, on the thread that called ``backward``; a layer's nodes therefore run as
one block that opens with the node that made the layer's output. A pre-hook on that node marks
the layer's start, and the next mark (or the last parameter's gradient being accumulated) its
end. The order the marks fire in is kept (``backward_order``) so this can be checked. On a GPU
every mark synchronizes the device, which serializes the layers (the GPU's overlap is lost).

What the bytes are: the least traffic the layer's arithmetic needs, each tensor read or written
once, at the dtype the step holds it in (activations as the hooks see them: bf16 under bf16
autocast; weights, gradients of weights, optimizer state and EMA in fp32). Forward: inputs +
output + weights. Backward: the output's gradient, the input's gradient (when the input needs
one), the saved input where the layer's backward reads it (convolutions, max pools), the
weights, and their gradients. This is what a kernel that fused the layer could move, not what
today's separate conv, batch-norm and activation kernels move; the gap between the two is the
room that fusion would reclaim. FLOPs: 2 per multiply-add of the convolutions (batch norm,
activations, pools and the loss are a few FLOPs an element, far below the bytes they move on
any machine, so they are counted as bytes only); a convolution's backward is the gradient of its
input and of its weights, each as many multiply-adds as the forward (the first layer's input
needs no gradient: 1x).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from models.layers import Route, Shortcut
from utils.engine.loop import Training, train_one_epoch

TOP_PARTS = 5


@dataclass(frozen=True)
class Rates:
    """What this machine sustains: ``gflops`` of matrix multiply at the step's precision and
    ``gbytes`` per second of memory traffic (both measured by the benchmark)."""
    gflops: float
    gbytes: float


@dataclass(frozen=True)
class Row:
    """One part of a step, per batch (the mean over the timed batches): ``seconds`` measured,
    ``flops`` and ``nbytes`` of its arithmetic. ``layer`` is its index in ``module_list``
    (None for the parts outside the model); ``phase`` "forward" or "backward" for a layer."""
    name: str
    phase: str
    seconds: float
    flops: float
    nbytes: float
    layer: int | None = None


def floor_seconds(flops: float, nbytes: float, rates: Rates) -> float:
    """The least time ``flops`` and ``nbytes`` take at ``rates``: the larger of the two bounds
    (arithmetic and traffic overlap at best, they never add up to less than either)."""
    return max(flops / (rates.gflops * 1e9), nbytes / (rates.gbytes * 1e9))


def conv_flops(conv: nn.Conv2d, output_shape: torch.Size | tuple[int, ...]) -> float:
    """FLOPs of ``conv``'s forward producing ``output_shape`` [B, Cout, H, W]: 2 per
    multiply-add, 2 * (Cin / groups) * kh * kw * B * Cout * H * W (``count_flops``'s rule)."""
    kernel = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels // conv.groups
    return 2.0 * kernel * torch.Size(output_shape).numel()


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def layer_kind(module: nn.Module) -> str:
    """A short name of a ``module_list`` entry: conv, maxpool, upsample, route, shortcut, yolo."""
    if isinstance(module, nn.Sequential) and hasattr(module, "Conv2d"):
        return "conv"
    if isinstance(module, Route):
        return "route"
    if isinstance(module, Shortcut):
        return "shortcut"
    if any(isinstance(m, nn.MaxPool2d) for m in module.modules()):
        return "maxpool"
    return {"YOLOLayer": "yolo", "RepeatUpsample": "upsample",
            "Upsample": "upsample"}.get(type(module).__name__, type(module).__name__.lower())


def _layer_inputs(module: nn.Module, args: tuple) -> list[torch.Tensor]:
    """The tensors a layer reads: a route its sources, a shortcut both addends."""
    if isinstance(module, Route):
        return [args[0][i] for i in module.layers]
    if isinstance(module, Shortcut):
        return [args[0], args[1][module.source]]
    return [args[0]]


def _weight_bytes(module: nn.Module) -> int:
    """Parameters, and batch-norm running statistics (small; read and written)."""
    stats = [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for b in (m.running_mean, m.running_var)]
    return tensor_bytes(module.parameters()) + 2 * tensor_bytes(stats)


def layer_costs(module: nn.Module, inputs: list[torch.Tensor], output: torch.Tensor
                ) -> tuple[float, float, float, float]:
    """(forward FLOPs, forward bytes, backward FLOPs, backward bytes) of one call of a layer
    (the model in the module docstring). A layer that hands on an input unchanged (a route of
    one source) moves nothing."""
    if any(output is t for t in inputs):
        return 0.0, 0.0, 0.0, 0.0
    weights = _weight_bytes(module)
    read, written = tensor_bytes(inputs), tensor_bytes([output])
    needs_grad = any(t.requires_grad for t in inputs)
    flops = sum(conv_flops(m, output.shape) for m in module.modules()
                if isinstance(m, nn.Conv2d))
    saves_input = flops > 0 or layer_kind(module) == "maxpool"
    backward_bytes = (written + read * needs_grad + read * saves_input + 2 * weights)
    return flops, read + written + weights, flops * (2 if needs_grad else 1), backward_bytes


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> int:
    """One step's least traffic: each parameter read and written, its gradient read, and each
    state tensor of its size (SGD's momentum, Adam's two moments) read and written."""
    total = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = [s for s in optimizer.state.get(p, {}).values()
                     if torch.is_tensor(s) and s.numel() == p.numel()]
            total += (3 + 2 * len(state)) * p.numel() * p.element_size()
    return total


def ema_bytes(ema) -> int:
    """One EMA update's least traffic: an averaged tensor read from both models and written,
    a copied buffer read and written."""
    total = 0
    for name, value in ema.module.state_dict().items():
        total += (3 if name in ema.averaged else 2) * value.numel() * value.element_size()
    return total


@dataclass
class _Recorder:
    """Timestamps of the step in the order they happen, and the costs counted by the hooks.

    The last parameter gradient's accumulation ends a backward pass; its time is kept and
    entered as the "backward end" event before the next event that is not a backward mark."""
    device: torch.device
    events: list[tuple[object, float]] = field(default_factory=list)
    costs: dict = field(default_factory=dict)
    backward_order: list[int] = field(default_factory=list)
    largest_tensor: int = 0
    grads_ready: float = 0.0
    in_backward: bool = False

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def mark(self, label) -> None:
        stamp = self.now()
        backward = isinstance(label, tuple) and label[0] == "backward"
        if self.in_backward and not backward:
            self.events.append(("backward end", self.grads_ready))
        self.in_backward = backward
        self.events.append((label, stamp))

    def add(self, key, flops: float, nbytes: float) -> None:
        old = self.costs.get(key, (0.0, 0.0))
        self.costs[key] = (old[0] + flops, old[1] + nbytes)

    def grad_ready(self, _param) -> None:
        self.grads_ready = self.now()

    def clear(self) -> None:
        self.events.clear()
        self.costs.clear()
        self.backward_order.clear()
        self.in_backward = False


class _TimedEMA:
    """The training's EMA, its update timed (train_one_epoch calls only ``update``)."""

    def __init__(self, ema, recorder: _Recorder):
        self.ema, self.recorder = ema, recorder

    def update(self, model: nn.Module) -> None:
        self.recorder.mark("ema")
        self.ema.update(model)
        self.recorder.mark("after ema")
        self.recorder.add("ema", 0.0, ema_bytes(self.ema))


class _TimedBatches:
    """A list of loaded batches that marks the moment each is handed to the loop."""

    def __init__(self, batches: list, recorder: _Recorder):
        self.batches, self.recorder = batches, recorder

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            self.recorder.mark("input")
            yield batch


def _attach(training: Training, recorder: _Recorder) -> list:
    """Register every hook; returns their handles."""
    net = training.model
    handles = [net.register_forward_pre_hook(
                   lambda _m, args: _before_model(args[0], recorder)),
               net.register_forward_hook(
                   lambda _m, _args, preds: _after_model(preds, recorder))]
    for index, module in enumerate(net.module_list):
        handles.append(module.register_forward_pre_hook(
            lambda _m, _args, i=index: recorder.mark(("forward", i))))
        handles.append(module.register_forward_hook(
            lambda m, args, output, i=index: _after_layer(m, args, output, i, recorder)))
    handles += [p.register_post_accumulate_grad_hook(recorder.grad_ready)
                for p in net.parameters() if p.requires_grad]
    handles.append(training.optimizer.register_step_pre_hook(
        lambda *_: recorder.mark("optimizer")))
    handles.append(training.optimizer.register_step_post_hook(
        lambda optimizer, *_: _after_optimizer(optimizer, recorder)))
    return handles


def _before_model(images: torch.Tensor, recorder: _Recorder) -> None:
    """The input row's traffic: the uint8 batch read, the float input written."""
    recorder.mark("forward glue")
    recorder.add("input", 0.0, images.numel() * (1 + images.element_size()))


def _after_model(preds: list[torch.Tensor], recorder: _Recorder) -> None:
    """The loss row's traffic: each prediction read, and its gradient written."""
    recorder.mark("loss")
    recorder.add("loss", 0.0, 2 * tensor_bytes(preds))


def _after_optimizer(optimizer: torch.optim.Optimizer, recorder: _Recorder) -> None:
    recorder.mark("after optimizer")
    recorder.add("optimizer", 0.0, optimizer_bytes(optimizer))


def _after_layer(module: nn.Module, args: tuple, output: torch.Tensor, index: int,
                 recorder: _Recorder) -> None:
    recorder.mark("forward glue")  # first, so the counting below is glue, not the layer
    inputs = _layer_inputs(module, args)
    forward_flops, forward_bytes, backward_flops, backward_bytes = layer_costs(
        module, inputs, output)
    recorder.add(("forward", index), forward_flops, forward_bytes)
    recorder.add(("backward", index), backward_flops, backward_bytes)
    recorder.largest_tensor = max(recorder.largest_tensor, tensor_bytes([output]))
    if output.grad_fn is not None and not any(output is t for t in inputs):
        def started(_grad_outputs):
            recorder.mark(("backward", index))
            recorder.backward_order.append(index)
        output.grad_fn.register_prehook(started)


@dataclass(frozen=True)
class StepProfile:
    """The measured step: ``rows`` per batch, ``span`` the seconds the rows cover over all
    ``batches`` (they partition it), ``wall`` the seconds of the whole train_one_epoch call,
    ``backward_order`` the layers in the order their backward started in the first batch."""
    rows: tuple[Row, ...]
    batches: int
    optimizer_steps: int
    span: float
    wall: float
    backward_order: tuple[int, ...]
    largest_tensor_bytes: int


def profile_step(training: Training, warm_up: list, batches: list) -> StepProfile:
    """Run train_one_epoch on ``warm_up`` (untimed: allocation, kernel choice), then on
    ``batches`` with the hooks timing it (both with the hooks in place, so the warm-up runs
    the same code). The ``training`` is consumed: its weights and optimizer move on."""
    plan = training.plan
    recorder = _Recorder(plan.device)
    handles = _attach(training, recorder)
    ema = _TimedEMA(training.ema, recorder)
    try:
        for epoch, subset in ((0, warm_up), (1, batches)):
            recorder.clear()
            start = time.perf_counter()
            train_one_epoch(training.train_model, ema, training.optimizer,
                            _TimedBatches(subset, recorder), plan.device, epoch,
                            plan.hyp["lr0"], training.settings, training.scaler)
            recorder.mark("end")
            wall = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    return _summarize(training.model, recorder, len(batches), wall)


def _summarize(net: nn.Module, recorder: _Recorder, batches: int, wall: float) -> StepProfile:
    """Each interval between consecutive events belongs to the part its first event opens."""
    events = recorder.events
    seconds: dict = {}
    for (label, start), (_, stop) in zip(events, events[1:]):
        key = "other" if label in ("backward end", "after optimizer", "after ema") else label
        seconds[key] = seconds.get(key, 0.0) + stop - start
    layers = range(len(net.module_list))
    keys = ("input", *(("forward", i) for i in layers), "forward glue", "loss",
            *(("backward", i) for i in reversed(layers)), "optimizer", "ema", "other")
    if set(seconds) - set(keys):  # an interval no row owns would vanish from the total
        raise RuntimeError(f"roofline: events without a row: {set(seconds) - set(keys)}")
    rows = tuple(_row(key, seconds, recorder.costs, batches, net) for key in keys)
    steps = sum(1 for label, _ in events if label == "optimizer")
    first = len(recorder.backward_order) // batches
    return StepProfile(rows, batches, steps, events[-1][1] - events[0][1], wall,
                       tuple(recorder.backward_order[:first]), recorder.largest_tensor)


ROW_NAMES = {"input": "input to the model", "forward glue": "forward, between layers",
             "loss": "loss, forward + backward", "optimizer": "optimizer step",
             "ema": "EMA update", "other": "other"}


def _row(key, seconds: dict, costs: dict, batches: int, net: nn.Module) -> Row:
    flops, nbytes = costs.get(key, (0.0, 0.0))
    values = dict(seconds=seconds.get(key, 0.0) / batches, flops=flops / batches,
                  nbytes=nbytes / batches)
    if isinstance(key, tuple):
        phase, index = key
        return Row(f"{index} {layer_kind(net.module_list[index])}", phase, layer=index,
                   **values)
    return Row(ROW_NAMES[key], "", **values)


def roofline_report(profile: StepProfile, rates: Rates) -> dict:
    """The profile's rows with their floors at ``rates``; the step's measured time (the span
    the rows partition, per batch), its limit (the floors' sum) and achieved / limit (limit /
    measured); the ``TOP_PARTS`` rows that lose the most time against their floor."""
    rows = []
    for row in profile.rows:
        compute, traffic = row.flops / (rates.gflops * 1e9), row.nbytes / (rates.gbytes * 1e9)
        rows.append({**asdict(row), "floor": floor_seconds(row.flops, row.nbytes, rates),
                     "bound": "FLOPs" if compute > traffic else "bytes"})
    measured = profile.span / profile.batches
    limit = sum(r["floor"] for r in rows)
    top = sorted(rows, key=lambda r: r["seconds"] - r["floor"], reverse=True)[:TOP_PARTS]
    return {"rates": asdict(rates), "batches": profile.batches,
            "optimizer_steps": profile.optimizer_steps, "step_seconds": measured,
            "limit_seconds": limit, "achieved_over_limit": limit / measured,
            "wall_step_seconds": profile.wall / profile.batches,
            "backward_order": list(profile.backward_order),
            "largest_tensor_bytes": profile.largest_tensor_bytes,
            "top": [_label(r) for r in top], "rows": rows}


def _label(row: dict) -> str:
    return f"{row['name']} {row['phase']}".strip()


def _group(rows: list[dict], phase: str) -> tuple[float, float]:
    chosen = [r for r in rows if r["layer"] is not None and r["phase"] == phase]
    return sum(r["seconds"] for r in chosen), sum(r["floor"] for r in chosen)


def format_roofline(case: dict) -> str:
    """The report of one case: the headline, the parts in groups, the top losers."""
    rows = case["rows"]
    lines = [f"{case['title']}: {case['step_seconds'] * 1e3:.1f} ms a batch measured "
             f"({case['batches']} batches, {case['optimizer_steps']} optimizer step(s)), limit "
             f"{case['limit_seconds'] * 1e3:.1f} ms: achieved / limit "
             f"{case['achieved_over_limit']:.3f}",
             f"  against matmul {case['rates']['gflops']:.0f} GFLOP/s and memory "
             f"{case['rates']['gbytes']:.1f} GB/s (measured: {case.get('threads', '?')} threads; "
             f"main memory {case.get('dram_gbytes', float('nan')):.1f} GB/s)"]
    groups = [("layers forward", *_group(rows, "forward")),
              ("layers backward", *_group(rows, "backward"))]
    groups += [(_label(r), r["seconds"], r["floor"]) for r in rows if r["layer"] is None]
    lines.append("  " + "; ".join(f"{name} {seconds * 1e3:.1f} (floor {floor * 1e3:.2f})"
                                  for name, seconds, floor in groups) + " ms")
    lines.append(f"  most time lost against the floor: {'part':<24} {'ms':>7} {'floor':>7} "
                 f"{'GFLOP':>7} {'MB':>7}  bound")
    by_label = {_label(r): r for r in rows}
    for label in case["top"]:
        r = by_label[label]
        lines.append(f"{'':>36}{label:<24} {r['seconds'] * 1e3:>7.2f} {r['floor'] * 1e3:>7.2f} "
                     f"{r['flops'] / 1e9:>7.3f} {r['nbytes'] / 1e6:>7.2f}  {r['bound']}")
    return "\n".join(lines)


def write_roofline(report: dict, path: Path) -> Path:
    """``report`` as JSON at ``path`` and its plot beside it (same name, .png); returns the
    plot's path."""
    path.write_text(json.dumps(report, indent=1))
    plot = path.with_suffix(".png")
    plot_roofline(report["cases"], plot)
    return plot


def plot_roofline(cases: list[dict], out: Path) -> None:
    """Per case a panel of horizontal bars, one a row of the step: measured time and floor."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(len(case["rows"]) for case in cases)
    fig, axes = plt.subplots(1, len(cases), figsize=(6.5 * len(cases), 1.5 + 0.17 * count),
                             squeeze=False, tight_layout=True)
    for ax, case in zip(axes[0], cases):
        rows = case["rows"]
        y = range(len(rows))
        ax.barh(y, [r["seconds"] * 1e3 for r in rows], height=0.8, color="tab:blue",
                label="measured")
        ax.barh(y, [r["floor"] * 1e3 for r in rows], height=0.4, color="tab:orange",
                label="floor")
        ax.set_yticks(list(y), [_label(r) for r in rows], fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel("ms a batch")
        ax.set_title(f"{case['title']}\nachieved / limit {case['achieved_over_limit']:.3f}",
                     fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.savefig(out, dpi=110)
    plt.close(fig)
