import pytest
import torch
from torch import nn

from models import Darknet
from tests.helpers import MICRO_CFG
from utils.engine import build_optimizer
from utils.hyp import load_hyp


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
