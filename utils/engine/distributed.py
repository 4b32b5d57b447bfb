"""Multi-process training under torchrun: which process this is, and the few collective steps
the trainer needs. With no torchrun environment everything here is a no-op (world size 1).

    torchrun --nproc_per_node 2 train.py --device cpu ...   # gloo on the CPU
    torchrun --nproc_per_node 4 train.py ...                # nccl, one GPU per process
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_spec: str) -> DistInfo:
    """Join the process group torchrun set up (nccl on GPUs, gloo on the CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    on_gpu = device_spec != "cpu" and torch.cuda.is_available()
    backend = "nccl" if on_gpu else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if on_gpu:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return DistInfo(dist.get_rank(), world_size, local_rank, backend)


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def broadcast_object(value, info: DistInfo):
    """``value`` as rank 0 has it, on every rank."""
    if info.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
