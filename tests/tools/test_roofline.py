import json

import pytest
import torch
from torch import nn

import tools.benchmark as benchmark
from models import Darknet
from models.darknet import count_flops
from models.layers import Route
from tests.helpers import MICRO_CFG, ROOT
from tools.roofline import Rates, conv_flops, floor_seconds, layer_costs, optimizer_bytes

MATMUL_GFLOPS, BANDWIDTH_GBYTES = 100.0, 10.0


def test_floor_is_the_larger_of_the_two_bounds():
    rates = Rates(gflops=100.0, gbytes=10.0)
    # 1 GFLOP at 100 GFLOP/s is 10 ms; 1 MB at 10 GB/s is 0.1 ms: arithmetic bound.
    assert floor_seconds(1e9, 1e6, rates) == pytest.approx(0.01)
    # 1 MFLOP is 0.01 ms; 1 GB is 100 ms: bound by the traffic.
    assert floor_seconds(1e6, 1e9, rates) == pytest.approx(0.1)
    assert floor_seconds(0.0, 0.0, rates) == 0.0


def test_conv_flops_are_two_per_multiply_add():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    output = conv(torch.zeros(2, 3, 64, 64))
    assert output.shape == (2, 8, 32, 32)
    assert conv_flops(conv, output.shape) == 2 * 3 * 8 * 3 * 3 * 32 * 32 * 2
    grouped = nn.Conv2d(8, 16, 1, groups=4)
    assert conv_flops(grouped, (1, 16, 5, 5)) == 2 * (8 // 4) * 16 * 5 * 5


def test_layer_costs_of_a_conv_block():
    block = nn.Sequential()
    block.add_module("Conv2d", nn.Conv2d(4, 8, 3, padding=1, bias=False))
    block.add_module("BatchNorm2d", nn.BatchNorm2d(8))
    x = torch.zeros(2, 4, 16, 16, requires_grad=True)
    y = block(x)
    flops = 2 * 4 * 8 * 9 * 2 * 16 * 16
    weights = (8 * 4 * 9 + 2 * 8) * 4 + 2 * (2 * 8) * 4  # conv, bn affine, bn stats twice
    read, written = x.numel() * 4, y.numel() * 4
    forward_flops, forward_bytes, backward_flops, backward_bytes = layer_costs(block, [x], y)
    assert (forward_flops, backward_flops) == (flops, 2 * flops)
    assert forward_bytes == read + written + weights
    # The output's gradient read; the input's gradient written and the input read again.
    assert backward_bytes == written + 2 * read + 2 * weights
    # The first layer: its input (the image) needs no gradient, so neither its arithmetic
    # nor its traffic.
    image = torch.zeros(2, 4, 16, 16)
    _, _, first_flops, first_bytes = layer_costs(block, [image], block(image))
    assert (first_flops, first_bytes) == (flops, written + read + 2 * weights)
    assert layer_costs(nn.Identity(), [x], x) == (0.0, 0.0, 0.0, 0.0)


def test_optimizer_bytes_count_the_state_it_keeps():
    weight = nn.Parameter(torch.ones(10))
    weight.grad = torch.ones(10)
    adam = torch.optim.Adam([weight])
    adam.step()
    # Parameter read and written, gradient read, two moments read and written; not "step".
    assert optimizer_bytes(adam) == 7 * 4 * 10
    sgd = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    sgd.step()
    assert optimizer_bytes(sgd) == 5 * 4 * 10


def test_memory_bandwidth_is_measured():
    assert benchmark.memory_bandwidth(torch.device("cpu"), 2 ** 20, trials=2) > 0


@pytest.fixture(scope="module")
def roofline(tiny_data, tmp_path_factory):
    """--roofline on the micro model, train.py's --repro step, with fixed machine rates so
    the floors can be checked to the digit."""
    out = tmp_path_factory.mktemp("roofline") / "roofline.json"
    # The SGD recipe, whose optimizer bytes the test counts below (the own-data default is Adam).
    data = tiny_data.with_name("tiny_sgd.data")
    data.write_text(tiny_data.read_text() + f"hyp={ROOT / 'data' / 'hyp.scratch.yaml'}\n")
    args = benchmark.get_args_parser().parse_args(
        ["--roofline", "--modes", "repro", "--cfgs", str(MICRO_CFG), "--img-sizes", "64",
         "--batch-size", "4", "--steps", "2", "--data", str(data), "--out", str(out)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(benchmark, "matmul_gflops", lambda *_a, **_k: MATMUL_GFLOPS)
        patch.setattr(benchmark, "memory_bandwidth", lambda *_a, **_k: BANDWIDTH_GBYTES)
        report = benchmark.main(args)
    return out, report["cases"][0]


def test_roofline_writes_json_and_plot(roofline):
    out, case = roofline
    assert json.loads(out.read_text())["cases"][0]["rows"] == case["rows"]
    assert out.with_suffix(".png").stat().st_size > 0
    assert case["precision"] == "fp32" and case["optimizer"] == "SGD"


def test_rows_cover_every_layer_and_partition_the_step(roofline):
    _, case = roofline
    layers = len(Darknet(MICRO_CFG).module_list)
    keys = {(r["layer"], r["phase"]) for r in case["rows"] if r["layer"] is not None}
    assert keys == {(i, phase) for i in range(layers) for phase in ("forward", "backward")}
    assert {r["name"] for r in case["rows"] if r["layer"] is None} == {
        "input to the model", "forward, between layers", "loss, forward + backward",
        "optimizer step", "EMA update", "other"}
    assert all(r["seconds"] >= 0 for r in case["rows"])
    # Every interval of the instrumented span belongs to exactly one row.
    assert sum(r["seconds"] for r in case["rows"]) == pytest.approx(case["step_seconds"])
    assert case["step_seconds"] <= case["wall_step_seconds"]


def test_backward_runs_layer_after_layer_in_reverse(roofline):
    _, case = roofline
    # A route of one source (layer 12) hands on a tensor, with no backward of its own.
    modules = Darknet(MICRO_CFG).module_list
    own = [i for i, m in enumerate(modules) if not (isinstance(m, Route) and len(m.layers) == 1)]
    assert len(own) == len(modules) - 1
    assert case["backward_order"] == own[::-1]


def test_flops_and_bytes_of_the_step(roofline):
    _, case = roofline
    rows = {(r["layer"], r["phase"]): r for r in case["rows"] if r["layer"] is not None}
    forward = sum(r["flops"] for (_, phase), r in rows.items() if phase == "forward")
    backward = sum(r["flops"] for (_, phase), r in rows.items() if phase == "backward")
    assert forward == 4 * count_flops(Darknet(MICRO_CFG, num_classes=4), 64)
    assert backward == 2 * forward - rows[0, "forward"]["flops"]
    model = Darknet(MICRO_CFG, num_classes=4)
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = next(r for r in case["rows"] if r["name"] == "optimizer step")
    # SGD with momentum: parameter read and written, gradient read, momentum read and written.
    assert optimizer["nbytes"] == 5 * 4 * parameters * case["optimizer_steps"] / case["batches"]


def test_floors_and_headline_arithmetic(roofline):
    _, case = roofline
    rates = Rates(MATMUL_GFLOPS, BANDWIDTH_GBYTES)
    for r in case["rows"]:
        assert r["floor"] == max(r["flops"] / 1e11, r["nbytes"] / 1e10)
        assert r["floor"] == floor_seconds(r["flops"], r["nbytes"], rates)
    assert case["limit_seconds"] == pytest.approx(sum(r["floor"] for r in case["rows"]))
    assert case["achieved_over_limit"] == pytest.approx(
        case["limit_seconds"] / case["step_seconds"])
    lost = sorted((r["seconds"] - r["floor"] for r in case["rows"]), reverse=True)[:5]
    by_label = {f"{r['name']} {r['phase']}".strip(): r for r in case["rows"]}
    assert [by_label[label]["seconds"] - by_label[label]["floor"]
            for label in case["top"]] == lost
