"""Data-parallel training on PyTorch's own engine: ``torchrun --nproc_per_node N -m rnnlab run``.

torchrun starts N processes and tells each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. Every
process builds the same model from the same seed and walks the same sequence of global batches;
each trains on its own slice of every batch (rows ``rank::world``), and
``DistributedDataParallel`` averages the gradients, so a step sees the whole global batch, as a
single process would. Only rank 0 writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

Batch = dict[str, Tensor]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """The process that writes files and shows progress."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> tuple[World, torch.device]:
        """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA), if there is one.

        Returns the world and this process's device (its own GPU under CUDA).
        """
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls(), device
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size()), device

    def shard(self, batch: Batch) -> tuple[Batch, int]:
        """This process's rows of a global batch (``rank``, ``rank + size``, ...) and their count.

        A batch with fewer rows than processes leaves some processes none; they still have to
        join the gradient exchange, so they get row 0 as a stand-in and a count of 0, which the
        trainer turns into a loss weight of 0.
        """
        if self.size == 1:
            return batch, len(next(iter(batch.values())))
        part = {name: t[self.rank :: self.size] for name, t in batch.items()}
        rows = len(next(iter(part.values())))
        if rows == 0:
            part = {name: t[:1] for name, t in batch.items()}
        return part, rows

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: ``model`` itself, or a DistributedDataParallel around it."""
        if self.size == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, values: Tensor) -> Tensor:
        """``values`` summed over every process (a no-op for one process)."""
        if self.size > 1:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def broadcast(self, value: object) -> object:
        """Rank 0's ``value``, on every process."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self, wait: bool = True) -> None:
        """Leave the process group; with ``wait``, first wait for every process (rank 0 writes
        the run directory last). After a failure nobody waits: the others may never arrive."""
        if self.size > 1 and dist.is_initialized():
            if wait:
                dist.barrier()
            dist.destroy_process_group()


def is_main_process() -> bool:
    """Whether this process is rank 0 of torchrun's processes (or runs alone)."""
    return int(os.environ.get("RANK", "0")) == 0
