"""Per-shard batch sums in shard order (utils/engine/shard_sums.py): the micro model trained a
few steps in 1 process and in 2 gloo processes, the same global batch, the same bits."""
from __future__ import annotations

import torch

from models import Darknet
from tests.helpers import MICRO_CFG, in_two_gloo_processes
from utils.base.repro import configure_determinism, state_fingerprint
from utils.data.hyp import SCRATCH_HYP, load_hyp, scale_hyp
from utils.engine.shard_sums import Shards, shard_losses, shard_model

GLOBAL_BATCH, SHARD, STEPS = 4, 2, 3


def _batch():
    """A fixed global batch: 4 images of 64 px and 2 boxes each."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(GLOBAL_BATCH, 3, 64, 64, generator=g)
    boxes = torch.cat((torch.rand(8, 2, generator=g) * 0.5 + 0.25,
                       torch.rand(8, 2, generator=g) * 0.3 + 0.1), 1)
    classes = torch.randint(0, 4, (8, 1), generator=g).float()
    index = torch.arange(GLOBAL_BATCH).repeat_interleave(2)[:, None].float()
    return images, torch.cat((index, classes, boxes), 1)


def _model():
    torch.manual_seed(0)
    return Darknet(str(MICRO_CFG), num_classes=4, upsample="deterministic").train()


def _train(rank: int, world: int, group=None) -> dict:
    """STEPS SGD steps on this process's shards; the state dict's fingerprint and the global
    batch's loss parts of each step."""
    configure_determinism(True, threads=2, portable=True)
    shards = Shards.of(GLOBAL_BATCH, SHARD, group)
    model = shard_model(_model(), shards)
    hyp = scale_hyp(load_hyp(SCRATCH_HYP), 4, len(model.head_indices), 64, GLOBAL_BATCH)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, targets = _batch()
    per_process = GLOBAL_BATCH // world
    lo = rank * per_process
    mine = images[lo:lo + per_process]
    rows = (targets[:, 0] >= lo) & (targets[:, 0] < lo + per_process)
    my_targets = targets[rows].clone()
    my_targets[:, 0] -= lo
    parts = []
    for _ in range(STEPS):
        loss, part = shard_losses(model(mine), my_targets, model.anchors(), model.strides(),
                                  hyp, shards)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        parts.append([v.hex() for v in part.tolist()])
    return {"fingerprint": state_fingerprint(model.state_dict()), "parts": parts}


def _train_in_two(rank: int) -> dict:
    return _train(rank, 2, torch.distributed.group.WORLD)


def test_one_and_two_processes_train_to_the_same_bits():
    one = _train(0, 1)
    two = in_two_gloo_processes(_train_in_two, timeout=300)
    assert two[0] == two[1] == one
    assert one["fingerprint"] != state_fingerprint(_model().state_dict())  # it trained


def test_one_shard_is_batch_norm_and_autograd_to_rounding():
    """The hand-written batch-norm and convolution gradients against torch's own: one shard
    of the whole batch, against the plain model and loss (the same arithmetic up to
    rounding)."""
    from utils.core.loss import yolo_loss
    configure_determinism(False, portable=True)
    images, targets = _batch()
    plain, sharded = _model(), shard_model(_model(), Shards.of(GLOBAL_BATCH, GLOBAL_BATCH))
    hyp = scale_hyp(load_hyp(SCRATCH_HYP), 4, len(plain.head_indices), 64, GLOBAL_BATCH)
    loss, _ = yolo_loss(plain(images), targets, plain.anchors(), plain.strides(), hyp,
                        fixed_order=True)
    loss.backward()
    shard_loss, _ = shard_losses(sharded(images), targets, sharded.anchors(), sharded.strides(),
                                 hyp, sharded.module_list[0][0].shards)
    shard_loss.backward()
    torch.testing.assert_close(shard_loss, loss, rtol=1e-5, atol=0)
    for (name, p), q in zip(plain.named_parameters(), sharded.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-6, msg=name)
    for (name, b), c in zip(plain.named_buffers(), sharded.buffers()):
        torch.testing.assert_close(c, b, rtol=1e-5, atol=1e-7, msg=name)
    configure_determinism(False)
