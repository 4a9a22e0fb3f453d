"""CUDA graphs for the training step: one launch where there were hundreds.

A small recurrent model on a GPU is bound by launch latency, not arithmetic: a step of the
addition task (an LSTM 128 over 7 + 4 steps, its backward and Adam) is hundreds of kernels of a
few microseconds each, and Python spends longer queueing them than the GPU spends running them.
A CUDA graph records the whole step once (forward, backward, clipping, optimizer update) and
replays it with one call. Replays run the very same kernels on the very same memory, so they
compute what the eager step computes; only the batch is copied into the graph's input tensors.

A graph fixes every shape, so :class:`StepGraphs` keeps one per batch shape (the short last
batch of an epoch, the length buckets of ragged text). The first batch of a shape runs eagerly,
on a side stream, which does the lazy work a capture must not (cuBLAS and cuDNN workspaces, the
optimizer's state); the second is captured, then replayed, and so is every later one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Batch = dict[str, Tensor]
Shape = tuple[tuple[str, tuple[int, ...], torch.dtype], ...]


class StepGraphs:
    """Run ``step(batch) -> loss`` as CUDA graphs, one per batch shape.

    ``step`` must do all of its work on the GPU (no ``.item()``, no host copies) and leave no
    state behind but what lives in tensors: the model's parameters and the optimizer's state.
    If a capture fails, graphs are switched off for the rest of the run: ``warn`` is told why
    (also kept in ``failure``) and every step from the failed one on runs eagerly.
    """

    def __init__(
        self, step: Callable[[Batch], Tensor], warn: Callable[[str], None] = lambda _: None
    ) -> None:
        self.step, self.warn = step, warn
        self.graphs: dict[Shape, tuple[torch.cuda.CUDAGraph, Batch, Tensor]] = {}
        self.warmed: set[Shape] = set()
        self.side = torch.cuda.Stream()
        self.replays = 0
        self.failure: str | None = None

    def __call__(self, batch: Batch) -> Tensor:
        if self.failure is not None:
            return self.step(batch)
        shape = self.shape_of(batch)
        if shape in self.graphs:
            graph, inputs, loss = self.graphs[shape]
            for name, t in batch.items():
                inputs[name].copy_(t)
            graph.replay()
            self.replays += 1
            return loss.clone()  # the next replay overwrites the graph's own output
        if shape not in self.warmed:
            self.warmed.add(shape)
            return self._on_side_stream(batch)
        return self._capture(shape, batch)

    @staticmethod
    def shape_of(batch: Batch) -> Shape:
        """What a graph fixes about a batch: each tensor's name, shape and dtype."""
        return tuple((name, tuple(t.shape), t.dtype) for name, t in batch.items())

    def _on_side_stream(self, batch: Batch) -> Tensor:
        here = torch.cuda.current_stream()
        self.side.wait_stream(here)
        with torch.cuda.stream(self.side):
            loss = self.step(batch)
        here.wait_stream(self.side)
        loss.record_stream(here)  # used on this stream after the side stream made it
        return loss

    def _capture(self, shape: Shape, batch: Batch) -> Tensor:
        inputs = {name: t.clone() for name, t in batch.items()}
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        try:
            # capture_begin rather than the torch.cuda.graph context, which runs gc.collect()
            # for every capture (tens of milliseconds, and ragged text has dozens of shapes).
            with torch.cuda.stream(self.side):
                graph.capture_begin()
                try:
                    loss = self.step(inputs)
                finally:
                    graph.capture_end()
        except RuntimeError as error:
            torch.cuda.synchronize()
            self.failure = str(error).splitlines()[0]
            self.warn(self.failure)
            return self.step(batch)
        torch.cuda.current_stream().wait_stream(self.side)
        self.graphs[shape] = (graph, inputs, loss)
        graph.replay()  # the capture recorded the step without running it
        self.replays += 1
        return loss.clone()
