"""Sources of mini-batches: tensors in memory, length buckets, and truncated-BPTT streams.

A source yields one epoch's batches (dicts of tensors sharing their first dimension) in an order
that comes from ``seed + epoch``, so a run is reproducible and an interrupted epoch is replayed
exactly on resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import Tensor

from rnnlab.data.text import char_streams, stream_chunks
from rnnlab.errors import RnnlabError

Batch = dict[str, Tensor]


class Batches(Protocol):
    """A source of mini-batches: iterate one epoch with :meth:`epoch`."""

    stateful: bool

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[Batch]: ...

    def to(self, device: torch.device) -> Batches: ...


class TensorBatches:
    """Mini-batches taken by index from tensors held in memory (no per-item collation).

    Every tensor shares its first dimension. The order of each epoch comes from ``seed + epoch``,
    so a run is reproducible and an epoch can be replayed on resume. With ``passes`` > 1 an epoch
    goes through the data that many times, each in its own order: a small dataset's epochs stay
    long enough that validating and saving after each costs little beside them.
    """

    stateful = False

    def __init__(
        self,
        tensors: dict[str, Tensor],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        passes: int = 1,
    ) -> None:
        sizes = {name: t.shape[0] for name, t in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors must share their first dimension, got {sizes}")
        self.tensors, self.batch_size, self.shuffle, self.seed = tensors, batch_size, shuffle, seed
        self.passes = passes
        self.size = next(iter(sizes.values()))

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size) * self.passes

    def to(self, device: torch.device) -> TensorBatches:
        moved = {name: t.to(device) for name, t in self.tensors.items()}
        return TensorBatches(moved, self.batch_size, self.shuffle, self.seed, self.passes)

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        order = None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.cat(
                [torch.randperm(self.size, generator=generator) for _ in range(self.passes)]
            )
        elif self.passes > 1:
            order = torch.arange(self.size).repeat(self.passes)
        sizes = [min(self.batch_size, self.size - s) for s in range(0, self.size, self.batch_size)]
        return self._views(order, sizes * self.passes)

    def _views(self, order: Tensor | None, sizes: list[int]) -> Iterator[Batch]:
        """The examples in ``order`` (None: as stored), cut into batches of ``sizes``.

        One gather per tensor and epoch, then every batch is a view: a gather per batch would
        pay a dispatch per tensor and batch, a visible share of a small model's step. The order
        goes to the device in one copy; a copy per batch from pageable memory would wait for
        the GPU to finish the step before.
        """
        tensors = self.tensors
        if order is not None:
            index = order.to(next(iter(tensors.values())).device)
            tensors = {name: t[index] for name, t in tensors.items()}
        start = 0
        for size in sizes:
            yield {name: t[start : start + size] for name, t in tensors.items()}
            start += size


class LengthBuckets(TensorBatches):
    """Mini-batches of similar lengths, each trimmed to its longest sequence.

    Each epoch shuffles the examples (seeded), sorts every pool of ``pool`` batches by length, cuts
    the pool into batches and shuffles the batches: little padding is computed, and the order is
    still random. ``tensors["lengths"]`` gives the lengths; ``tensors["x"]`` is trimmed.
    """

    def __init__(
        self, tensors: dict[str, Tensor], batch_size: int, seed: int = 0, pool: int = 50
    ) -> None:
        super().__init__(tensors, batch_size, shuffle=True, seed=seed)
        self.pool = pool
        self.host_lengths = tensors["lengths"].cpu()  # batch maxima without a device sync

    def to(self, device: torch.device) -> LengthBuckets:
        moved = {name: t.to(device) for name, t in self.tensors.items()}
        return LengthBuckets(moved, self.batch_size, self.seed, self.pool)

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.size, generator=g)
        span = self.pool * self.batch_size
        batches = []
        for start in range(0, self.size, span):
            chunk = order[start : start + span]
            chunk = chunk[self.host_lengths[chunk].argsort(stable=True)]
            batches += list(chunk.split(self.batch_size))
        batches = [batches[k] for k in torch.randperm(len(batches), generator=g).tolist()]
        order = torch.cat(batches)
        sizes = [len(b) for b in batches]
        longest = [int(part.max()) for part in self.host_lengths[order].split(sizes)]
        for batch, steps in zip(self._views(order, sizes), longest, strict=True):
            batch["x"] = batch["x"][:, :steps]
            yield batch


def batch_size_of(batch: Batch) -> int:
    """Examples in a batch: the first dimension of its first tensor."""
    return next(iter(batch.values())).shape[0]


class StreamBatches:
    """Truncated-BPTT chunks of ``batch_size`` contiguous streams, in order (a stateful source).

    Row b of every chunk continues row b of the chunk before, so the trainer carries the state
    across chunks. Each epoch starts the streams at a different offset (< ``bptt``, seeded), so the
    gradient is not cut at the same characters every epoch.
    """

    stateful = True

    def __init__(self, ids: Tensor, batch_size: int, bptt: int, seed: int = 0) -> None:
        if len(ids) - bptt < batch_size:
            raise RnnlabError(
                f"the training text ({len(ids)} characters) is too short for "
                f"train.batch_size={batch_size} streams; lower train.batch_size"
            )
        self.ids, self.batch_size, self.bptt, self.seed = ids, batch_size, bptt, seed

    def __len__(self) -> int:
        return math.ceil(((len(self.ids) - 1) // self.batch_size) / self.bptt)

    def to(self, device: torch.device) -> StreamBatches:
        return StreamBatches(self.ids.to(device), self.batch_size, self.bptt, self.seed)

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        offset = int(torch.randint(self.bptt, (1,), generator=generator)) if epoch else 0
        streams = char_streams(self.ids[offset:], self.batch_size)  # (B, L + 1)
        for x, y in stream_chunks(streams, self.bptt):
            yield {"x": x, "y": y}  # (B, <= bptt) each, y = x shifted by one character
