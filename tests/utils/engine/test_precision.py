import contextlib

import torch

from utils.engine.precision import checkpoint_autocast, forward_context


def test_a_checkpoint_runs_in_its_recorded_precision():
    cpu = torch.device("cpu")
    assert checkpoint_autocast({}, cpu) is None  # a darknet file: no metadata
    assert checkpoint_autocast({"args": None}, cpu) is None
    assert checkpoint_autocast({"args": {"epochs": 3}}, cpu) is None  # from before --amp
    factory = checkpoint_autocast({"args": {"precision": "bf16"}}, cpu)
    with forward_context(factory):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_fp32_forward_has_no_autocast():
    assert isinstance(forward_context(None), contextlib.nullcontext)
    with forward_context(None):
        assert not torch.is_autocast_enabled("cpu")
