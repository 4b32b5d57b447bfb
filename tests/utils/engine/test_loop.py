import pytest
import torch
from torch import nn

from models import Darknet
from tests.helpers import MICRO_CFG
from utils.data.hyp import load_hyp
from utils.engine.loop import build_optimizer


def _group_ids(optimizer):
    return [{id(p) for p in group["params"]} for group in optimizer.param_groups]


@pytest.mark.parametrize("adam", [False, True])
def test_optimizer_groups_cover_every_parameter_once(adam):
    model = Darknet(MICRO_CFG, num_classes=4)
    hyp = load_hyp()
    optimizer = build_optimizer(model, hyp, adam=adam)
    bn, conv, bias = _group_ids(optimizer)
    assert isinstance(optimizer, torch.optim.Adam if adam else torch.optim.SGD)
    assert not (bn & conv or bn & bias or conv & bias)
    assert bn | conv | bias == {id(p) for p in model.parameters()}
    # Decay on conv weights only.
    decays = [group["weight_decay"] for group in optimizer.param_groups]
    assert decays == [0, hyp["weight_decay"], 0]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert conv == {id(m.weight) for m in convs}


def test_sync_batchnorm_weights_are_trained():
    model = nn.SyncBatchNorm.convert_sync_batchnorm(Darknet(MICRO_CFG, num_classes=4))
    sync = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert sync
    bn, _, bias = _group_ids(build_optimizer(model, load_hyp(), adam=False))
    assert bn == {id(m.weight) for m in sync}
    assert {id(m.bias) for m in sync} <= bias


@pytest.mark.parametrize("adam", [False, True])
def test_fused_optimizer_steps_as_the_per_tensor_one(adam):
    """The fused kernels are a speed-up only: with per-group learning rates changed between
    steps (as the warm-up does), they land where torch's per-tensor loop lands."""
    torch.manual_seed(0)
    fused_model = Darknet(MICRO_CFG, num_classes=4)
    loop_model = Darknet(MICRO_CFG, num_classes=4)
    loop_model.load_state_dict(fused_model.state_dict())
    hyp = load_hyp()
    fused = build_optimizer(fused_model, hyp, adam=adam)
    loop = build_optimizer(loop_model, hyp, adam=adam)
    assert all(group["fused"] for group in fused.param_groups)
    for group in loop.param_groups:
        group["fused"], group["foreach"] = False, False
    for step in range(3):
        for opt, model in ((fused, fused_model), (loop, loop_model)):
            for k, group in enumerate(opt.param_groups):
                group["lr"] = 0.01 * (step + 1) * (k + 1)
            torch.manual_seed(step)
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            opt.step()
    for a, b in zip(fused_model.parameters(), loop_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_multi_scale_keeps_a_rect_batchs_aspect_and_spans_half_to_one_and_a_half():
    from utils.engine.loop import _rescale_batch
    sizes = set()
    for batch in range(200):
        out = _rescale_batch(torch.zeros(1, 3, 160, 224), seed=0, epoch=0, batch=batch)
        h, w = out.shape[2:]
        assert h % 32 == 0 and w % 32 == 0
        assert abs(h / w - 160 / 224) < 0.2  # not squashed to a square
        sizes.add(w)
    # Every multiple of 32 within 0.5x..1.5x of 224 (112..336), and nothing outside it.
    assert sizes == set(range(128, 321, 32))
