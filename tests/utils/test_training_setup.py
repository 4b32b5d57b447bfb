import os

import torch

from utils.training_setup import default_workers


def test_cpu_workers_follow_the_image_cache():
    # Cached images cost less to augment than workers cost the step in contention.
    assert default_workers("cpu", cached=True) == 0
    assert default_workers("cpu", cached=False) == min(2, os.cpu_count() or 1)
    assert default_workers("", cached=True) == (0 if not torch.cuda.is_available()
                                                else min(8, os.cpu_count() or 1))


def test_gpu_gets_a_worker_per_core(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_workers("0", cached=True) == min(8, os.cpu_count() or 1)
    assert default_workers("cpu", cached=True) == 0
