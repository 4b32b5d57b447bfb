import math

import torch

from models import Darknet
from tests.helpers import MICRO_CFG
from utils.engine.ema import ModelEMA, averaged_names


def test_decay_ramps_up_from_zero():
    ema = ModelEMA(torch.nn.Linear(2, 2), decay=0.9999, ramp=2000)
    assert ema.current_decay() == 0.0
    ema.updates = 2000
    assert math.isclose(ema.current_decay(), 0.9999 * (1 - math.exp(-1)))


def test_update_is_the_weighted_average():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.5, ramp=1e-9)  # decay 0.5 from the first update
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    assert ema.module.weight.item() == 2.0
    assert not ema.module.weight.requires_grad


def test_constants_are_copied_not_averaged():
    """After 5,000 updates an anchor of 198 must still read exactly 198."""
    model = Darknet(MICRO_CFG, num_classes=4)
    ema = ModelEMA(model)
    assert "module_list.11.anchors" not in averaged_names(model)
    assert "module_list.0.BatchNorm2d.running_mean" in averaged_names(model)
    with torch.no_grad():
        model.module_list[11].anchors.fill_(198.0)
        ema.module.module_list[11].anchors.fill_(198.0)
        for _ in range(5000):
            ema.update(model)
    assert torch.equal(ema.module.module_list[11].anchors, torch.full((3, 2), 198.0))


def test_state_round_trip():
    model = Darknet(MICRO_CFG, num_classes=4)
    ema = ModelEMA(model)
    for _ in range(3):
        ema.update(model)
    other = ModelEMA(Darknet(MICRO_CFG, num_classes=4))
    other.load_state_dict(ema.state_dict())
    assert other.updates == 3
    for a, b in zip(ema.module.state_dict().values(), other.module.state_dict().values()):
        assert torch.equal(a, b)


def test_update_has_the_bits_of_a_per_tensor_mul_then_add():
    # The batched update must not move any fingerprint or metric of earlier runs.
    torch.manual_seed(0)
    model, start = Darknet(MICRO_CFG, num_classes=4), Darknet(MICRO_CFG, num_classes=4)
    ema = ModelEMA(start)
    expected = {k: v.clone() for k, v in ema.module.state_dict().items()}
    names = averaged_names(model)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        d = ema.current_decay()
        for name, value in model.state_dict().items():
            if name in names:
                expected[name].mul_(d).add_(value, alpha=1 - d)
            else:
                expected[name].copy_(value)
    for name, value in ema.module.state_dict().items():
        assert torch.equal(value, expected[name]), name
