"""The code runs on the lent GPU machine's torch 2.11 / torchvision 0.26 as on the pinned 2.14.1:
it uses no torch API newer than 2.11, and where it reaches for one that may be missing
(a keyword, a private torchvision function) a version gate picks the fallback.

NEWER_THAN_2_11: the public names and keyword arguments torch 2.14.1 has and 2.11.0 lacks, in the
modules this code uses (found 2026-12-06 by comparing ``dir()`` and ``inspect.signature`` of
both versions, installed side by side; docs/gpu.md). A use of any of them fails here."""
from __future__ import annotations

import importlib
import re

import pytest
import torch

from tests.helpers import ROOT

NEWER_THAN_2_11 = {
    # names
    r"\bset_timeout\(": "torch.distributed.set_timeout",
    r"\b(all_gather_single|gather_into_tensor|gather_single|reduce_scatter_single)\(":
        "torch.distributed's single-tensor collectives",
    r"\brecord_comm\b|\bget_backend_impl\b|ProcessGroupNCCL2|ProcessGroupNCCLLazy":
        "torch.distributed internals",
    r"\bthread_safe_generator\b|\bbcomplex32\b": "torch.thread_safe_generator, torch.bcomplex32",
    r"LinearCrossEntropy|linear_cross_entropy": "nn.LinearCrossEntropyLoss",
    r"\b(blas|cublas|cublaslt)_workspace_size\b|is_ck_sdpa_available":
        "torch.backends.cuda workspace sizes",
    r"caching_allocator_disabled|current_solver_handle|graph_annotations|export_graph_data":
        "torch.cuda's new functions",
    r"accelerator\.(Graph|graphs|random|empty_host_cache)\b": "torch.accelerator's new members",
    r"\bconst_data_ptr\b|swap_in_optimizer_params_and_state|_philox_": "newer tensor methods",
    # keyword arguments
    r"barrier\([^)]*timeout\s*=": "dist.barrier(timeout=)",
    r"_object(_list)?\([^)]*weights_only\s*=": "the object collectives' weights_only=",
    r"enable_reconfigure\s*=|sort_ranks\s*=": "init_process_group / new_group keywords",
    r"BatchNorm\dd\([^)]*\bbias\s*=": "BatchNorm2d(bias=)",
    r"batched_grad_copy\s*=|forward_sync_buffers\s*=": "DistributedDataParallel's new keywords",
    r"recompile_limit\s*=|isolate_recompiles\s*=|dynamic_shapes\s*=": "torch.compile's keywords",
    r"enable_annotations\s*=|check_input_liveness\s*=": "torch.cuda.graph's keywords",
}


def _sources():
    for path in sorted(ROOT.rglob("*.py")):
        inside = path.relative_to(ROOT).parts
        if inside[0] not in ("runs", "tests") and not any(p.startswith(".") for p in inside):
            yield path


@pytest.mark.parametrize("pattern", list(NEWER_THAN_2_11))
def test_no_torch_api_newer_than_2_11(pattern):
    found = [f"{path.relative_to(ROOT)}:{n}" for path in _sources()
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(pattern, line)]
    assert not found, f"{NEWER_THAN_2_11[pattern]} (not in torch 2.11) used at {found}"


def test_the_scan_finds_what_it_looks_for():
    assert re.search(r"barrier\([^)]*timeout\s*=", "dist.barrier(timeout=delta)")
    assert re.search(r"BatchNorm\dd\([^)]*\bbias\s*=", "nn.BatchNorm2d(8, bias=False)")
    assert len(list(_sources())) > 50


def test_the_apis_named_in_issue_36_are_in_2_11_and_used_as_it_has_them():
    """What 2.11 has (and this code uses): each checked on the torch here, and by the dry run
    under 2.11.0 (docs/gpu.md)."""
    import inspect
    assert hasattr(torch.nn.Module, "compile")                            # 2.2
    assert "device" in inspect.signature(torch.amp.GradScaler).parameters  # 2.3
    assert hasattr(torch.utils.deterministic, "fill_uninitialized_memory")  # 2.1
    assert "weights_only" in inspect.signature(torch.load).parameters
    assert hasattr(torch.backends.cudnn, "allow_tf32")
    assert hasattr(torch.backends.cuda.matmul, "allow_tf32")


def test_torchvisions_private_nms_paths_fall_back_to_the_public_one(monkeypatch):
    """A torchvision without the two private functions: nms.py still imports, on batched_nms."""
    import torchvision.ops.boxes as boxes

    import utils.core.nms as nms
    monkeypatch.delattr(boxes, "_batched_nms_vanilla")
    try:
        fallback = importlib.reload(nms)
        assert fallback._batched_nms_vanilla is fallback.batched_nms
        prediction = torch.tensor([[[50.0, 50, 20, 20, 0.9, 0.9, 0.1],
                                    [51.0, 50, 20, 20, 0.9, 0.9, 0.1]]])
        assert len(fallback.non_max_suppression(prediction, 0.1, 0.5)[0]) == 1
    finally:
        monkeypatch.undo()
        importlib.reload(nms)
