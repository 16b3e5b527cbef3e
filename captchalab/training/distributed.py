"""Training on several processes or machines through PyTorch's own engine (``torchrun``).

``torchrun --nproc_per_node=N -m captchalab train ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each process trains a replica on its shard
of every epoch's shuffled order with a per-process batch of ``batch_size / N``; their
gradients are averaged (gloo on CPU, NCCL on GPUs), so a step sees the same number of images
as one process would, and the schedule is the same. Only rank 0 validates and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Distributed:
        """The ranks ``torchrun`` sets, or a single process when they are absent."""
        try:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers "
                             "(torchrun sets them)") from None
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"RANK {rank} does not fit WORLD_SIZE {world_size}")
        return cls(rank, world_size, local_rank)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on a machine; the CPU is shared."""
        if self.enabled and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def batch_size(self, batch_size: int) -> int:
        """Each process's share of a step's images."""
        return -(-batch_size // self.world_size)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's share of an epoch's order; the order is padded by repeating its
        start so that every process gets as many images (and steps) as the others."""
        if not self.enabled:
            return order
        per_process = -(-len(order) // self.world_size)
        padding = per_process * self.world_size - len(order)
        padded = torch.cat([order, order[:padding]]) if padding else order
        return padded[self.rank :: self.world_size]

    def most(self, value: float) -> float:
        """The largest ``value`` over all processes (they stop on the same step)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    def from_main(self, values: list[int]) -> list[int]:
        """Rank 0's ``values`` on every rank (the others' are replaced)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.long)
        dist.broadcast(tensor, src=0)
        return [int(v) for v in tensor.tolist()]

    def barrier(self) -> None:
        """Wait until every process gets here. The run ends with one, after rank 0 has
        written the model: a rank that left first and tore down the group while rank 0 was
        still validating and writing aborted the whole command."""
        if self.enabled and dist.is_initialized():
            dist.barrier()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model whose backward pass averages gradients over the processes."""
        if not self.enabled:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


@contextmanager
def process_group(distributed: Distributed, device: torch.device) -> Iterator[None]:
    """Join the processes' group for the duration of a run (nothing to do for one process)."""
    if not distributed.enabled or dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def refuse_under_torchrun(what: str) -> None:
    """A clear error for a command that runs its own series of trainings in one process."""
    if Distributed.from_environment().enabled:
        raise ValueError(f"{what} runs in one process; start it without torchrun")
