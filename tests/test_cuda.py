"""CUDA code paths. They skip cleanly on machines without a GPU (CI has none)."""
from __future__ import annotations

import pytest
import torch
import yaml

from tests.helpers import comparable, run_train
from utils.core.loss import yolo_loss

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_two_repro_runs_on_cuda_are_identical(tiny_data, tmp_path):
    a = run_train(tiny_data, tmp_path, "--repro", "--device", "0", "--name", "a")
    b = run_train(tiny_data, tmp_path, "--repro", "--device", "0", "--name", "b")
    assert comparable(a) == comparable(b)


def test_cuda_starts_from_the_cpu_weights_and_batches(tiny_data, tmp_path):
    """Init and data come from CPU generators: a GPU and a CPU run start from the same weights
    and draw the same first batch, so any drift between them comes from arithmetic alone."""
    gpu = run_train(tiny_data, tmp_path, "--repro", "--device", "0", "--epochs", "1",
                    "--name", "gpu")
    cpu = run_train(tiny_data, tmp_path, "--repro", "--device", "cpu", "--epochs", "1",
                    "--name", "cpu")
    records = [yaml.safe_load((run / "repro.yaml").read_text()) for run in (gpu, cpu)]
    assert records[0]["initial_fingerprint"] == records[1]["initial_fingerprint"]
    assert records[0]["environment"]["device"] == "cuda:0"
    assert (gpu / "train_batch0.jpg").read_bytes() == (cpu / "train_batch0.jpg").read_bytes()


def test_loss_is_deterministic_under_strict_mode_on_cuda():
    torch.use_deterministic_algorithms(True)
    try:
        p = torch.randn(4, 3, 8, 8, 9, device="cuda", requires_grad=True)
        targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3], [0, 1, 0.51, 0.5, 0.3, 0.3],
                                [3, 2, 0.2, 0.7, 0.2, 0.4]], device="cuda")
        hyp = {"box": 0.05, "obj": 1.0, "cls": 0.5, "cls_pw": 1.0, "obj_pw": 1.0,
               "anchor_t": 4.0, "iou_type": "giou"}
        anchors = [torch.tensor([[8.0, 8.0], [16.0, 16.0], [32.0, 32.0]])]
        grads = []
        for _ in range(2):
            p.grad = None
            loss, _ = yolo_loss([p], targets, anchors, [8], hyp)
            loss.backward()
            grads.append(p.grad.clone())
        assert torch.equal(grads[0], grads[1])
    finally:
        torch.use_deterministic_algorithms(False)


def test_the_model_input_has_the_cpus_bits_on_cuda():
    from utils.data.inputs import to_model_input
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(2, 3, 16, 16)
    cpu = to_model_input(pixels, torch.device("cpu"))
    gpu = to_model_input(pixels, torch.device("cuda", 0)).cpu()
    assert torch.equal(cpu.view(torch.int32), gpu.view(torch.int32))
