import contextlib

import torch

from utils.engine.precision import checkpoint_autocast, forward_context, inference_precision


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


def test_inference_runs_fp32_on_the_cpu_and_the_runs_precision_on_a_gpu():
    """detect.py's default: on the CPU, fp32 as the .onnx export computes; on a GPU, the run's
    own precision; --precision over both."""
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    precision, reason = inference_precision(None, "bf16", cpu)
    assert precision == "fp32" and "--precision bf16" in reason
    assert inference_precision(None, "fp32", cpu) == ("fp32", "the checkpoint's")
    assert inference_precision(None, "bf16", gpu) == ("bf16", "the checkpoint's")
    assert inference_precision("bf16", "fp32", cpu) == ("bf16", "--precision")
    assert inference_precision("fp32", "fp16", gpu) == ("fp32", "--precision")
