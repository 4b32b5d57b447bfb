"""Multi-process training under torchrun: which process this is, and the few collective steps
the trainer needs. With no torchrun environment everything here is a no-op (world size 1).

    torchrun --nproc_per_node 2 train.py --device cpu ...   # gloo on the CPU
    torchrun --nproc_per_node 4 train.py ...                # nccl, one GPU per process
    torchrun --nnodes 2 --node_rank K --master_addr HOST --master_port P --nproc_per_node 4 \
        train.py ...                                        # on each of 2 nodes (docs/repro.md)
"""
from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils.base.errors import InputError

# How long a collective waits for the slowest rank before it fails. Rank 0 evaluates each
# epoch and writes the checkpoints while the others wait at a barrier: on a large validation
# set that outlasts NCCL's default of 10 minutes. DIST_TIMEOUT_MINUTES overrides it.
TIMEOUT_VARIABLE = "DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 30.0


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
        dist.init_process_group(backend, **group_arguments(on_gpu, local_rank))
    return DistInfo(dist.get_rank(), world_size, local_rank, backend)


def timeout_minutes(environ=os.environ) -> float:
    """The collectives' timeout: DIST_TIMEOUT_MINUTES, else 30 minutes."""
    text = environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_MINUTES
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise InputError(f"{TIMEOUT_VARIABLE}={text!r}: expected minutes above 0")
    return minutes


def group_arguments(on_gpu: bool, local_rank: int, environ=os.environ,
                    init=dist.init_process_group) -> dict:
    """init_process_group's timeout, and on a GPU its ``device_id`` (the process's own GPU,
    bound at once rather than guessed at the first collective) where this torch takes it
    (2.3 and later; 2.11 does)."""
    arguments = {"timeout": datetime.timedelta(minutes=timeout_minutes(environ))}
    if on_gpu and "device_id" in inspect.signature(init).parameters:
        arguments["device_id"] = torch.device("cuda", local_rank)
    return arguments


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


def epoch_over_ranks(loss_sums: torch.Tensor, targets: int) -> tuple[torch.Tensor, int]:
    """An epoch's loss sums and last-batch target count for the whole global batch: each
    process computed them on its share, so the losses are averaged over the processes and the
    targets added up (one all-reduce). With one process they are returned as they are, so a
    single process's results keep every bit."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return loss_sums, targets
    both = torch.cat([loss_sums.detach().float(),
                      torch.tensor([float(targets)], device=loss_sums.device)])
    dist.all_reduce(both)
    return both[:-1] / dist.get_world_size(), int(both[-1].item())


def shutdown(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
