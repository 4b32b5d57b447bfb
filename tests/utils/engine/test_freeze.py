"""utils.engine.freeze: frozen layers keep every tensor, batch-norm statistics included, through
optimizer steps with weight decay and momentum, and so does the EMA."""
import pytest
import torch
from torch import nn

from models import Darknet
from tests.helpers import MICRO_CFG
from utils.core.loss import yolo_loss
from utils.data.hyp import load_hyp
from utils.engine.ema import ModelEMA
from utils.engine.freeze import freeze_layers, frozen_names, hold_frozen_statistics
from utils.engine.loop import build_optimizer

FROZEN = tuple(range(9))  # the micro model's backbone: layers 0..8, before its first head


def _steps(model, optimizer, ema, frozen, steps=4):
    """A few training steps on random images, as the loop runs them."""
    torch.manual_seed(0)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3], [1, 2, 0.3, 0.6, 0.2, 0.4]])
    hyp = dict(load_hyp(), label_smoothing=0.1)
    for _ in range(steps):
        model.train()
        hold_frozen_statistics(model, frozen)
        preds = model(torch.rand(2, 3, 64, 64))
        loss, _ = yolo_loss(preds, targets, model.anchors(), model.strides(), hyp,
                            label_smoothing=hyp["label_smoothing"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model)


@pytest.mark.parametrize("adam", [False, True])
def test_frozen_layers_keep_every_bit_through_steps_and_the_ema(adam):
    model = Darknet(MICRO_CFG, num_classes=4)
    assert freeze_layers(model, FROZEN) > 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = frozen_names(model, FROZEN)
    assert "module_list.0.BatchNorm2d.running_mean" in names
    assert not any(k.startswith("module_list.10.") for k in names)
    optimizer = build_optimizer(model, load_hyp(), adam=adam)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not held & {id(p) for p in model.module_list[:9].parameters()}  # left out
    # A decay near 0.6 from the first update: an average of equal values rounds away from
    # them there (7 of the 42 frozen tensors moved without ``copied``).
    ema = ModelEMA(model, ramp=1.0, copied=names)
    _steps(model, optimizer, ema, FROZEN)
    after, averaged = model.state_dict(), ema.module.state_dict()
    for name in names:
        assert torch.equal(after[name], before[name]), name
        assert torch.equal(averaged[name], before[name]), name
    uncopied = ModelEMA(model, ramp=1.0)
    uncopied.module.load_state_dict(before)
    for _ in range(6):
        uncopied.update(model)
    assert any(not torch.equal(uncopied.module.state_dict()[n], before[n]) for n in names)
    moved = [k for k in after if k not in names and not torch.equal(after[k], before[k])]
    assert "module_list.10.Conv2d.weight" in moved
    assert "module_list.13.BatchNorm2d.running_mean" in moved  # unfrozen statistics still learn


def test_batch_norm_of_frozen_layers_stays_in_eval_mode_after_train():
    model = Darknet(MICRO_CFG, num_classes=4)
    model.train()
    hold_frozen_statistics(model, FROZEN)
    bns = {i: m for i, block in enumerate(model.module_list) for m in block.modules()
           if isinstance(m, nn.BatchNorm2d)}
    assert all(not bn.training for i, bn in bns.items() if i in FROZEN)
    assert all(bn.training for i, bn in bns.items() if i not in FROZEN)
    assert model.module_list[0].Conv2d.training  # only batch norm is held


def test_without_frozen_layers_nothing_changes():
    """No --freeze: the same optimizer groups, in the same order, and the same EMA names."""
    model = Darknet(MICRO_CFG, num_classes=4)
    assert frozen_names(model, ()) == set() and freeze_layers(model, ()) == 0
    groups = build_optimizer(model, load_hyp(), adam=False).param_groups
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert ModelEMA(model).averaged == ModelEMA(model, copied=set()).averaged


def test_every_batch_norm_frozen_still_builds_an_optimizer():
    """A first group left empty (all batch norm frozen) is allowed, as a group."""
    model = Darknet(MICRO_CFG, num_classes=4)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.requires_grad_(False)
    optimizer = build_optimizer(model, load_hyp(), adam=False)
    assert optimizer.param_groups[0]["params"] == []
