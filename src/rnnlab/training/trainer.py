"""The one training loop every task shares: the step and the epoch loop, nothing else.

A task hands the :class:`Trainer` a model, a batch source, a loss function and an evaluation
function. The trainer steps (forward, backward, clipping, update; the carried state of truncated
BPTT; the loss summed over the processes of a run) and validates after every epoch. Everything
around the loop is a callback (:mod:`rnnlab.training.callbacks`): the progress display,
checkpoints and signal handling, the best epoch and early stopping, TensorBoard, the history file.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from torch import Tensor, nn

from rnnlab import runtime
from rnnlab.errors import RnnlabError
from rnnlab.training.batches import Batch, Batches, batch_size_of
from rnnlab.training.callbacks import BestEpoch, Callback, fresh_state
from rnnlab.training.config import TrainConfig
from rnnlab.training.device import autocast, missing_for, resolve_precision
from rnnlab.training.distributed import World
from rnnlab.training.graphs import StepGraphs
from rnnlab.training.optim import build_optimizer, build_schedule

LossFn = Callable[[nn.Module, Batch, Any], tuple[Tensor, Any]]
EvalFn = Callable[[nn.Module], dict[str, float]]


def detach_state(state: Any) -> Any:
    """Cut the graph behind a carried recurrent state (truncated BPTT)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(detach_state(s) for s in state)
    return state


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns: one row per epoch and where the best one was."""

    history: list[dict[str, float]]
    best_epoch: int
    best_value: float
    train_seconds: float
    stopped_early: bool


class Diverged(RnnlabError):
    """Training stopped on a loss or gradient that is not finite; the weights are the last good ones."""


class Trainer:
    """Fit a model with mini-batch gradient descent.

    Args:
        model: any ``nn.Module``.
        cfg: the ``[train]`` section.
        loss_fn: ``(model, batch, state) -> (loss, state)``; ``state`` is the recurrent state
            carried between batches of a stateful source (truncated BPTT), else None.
        evaluate: ``model -> {"val_...": value}``, called after every epoch in eval mode.
        device: where the model and the data live.
        callbacks: what runs around the loop, in order (:mod:`rnnlab.training.callbacks`);
            None: :class:`~rnnlab.training.callbacks.BestEpoch` alone (the best weights are
            restored at the end, ``train.patience`` stops early).
        world: the training processes under torchrun; each trains on its slice of every batch.
        console: where callbacks print, unless ``quiet``.
        quiet: callbacks print nothing.

    Attributes a callback may use: ``state`` (:class:`TrainingState`), ``best`` (the best
    weights so far, or None), ``carry`` (the carried recurrent state), ``improved`` (whether the
    last epoch was the best so far), ``stop`` (set it to end training after this epoch).
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        loss_fn: LossFn,
        evaluate: EvalFn,
        device: torch.device,
        callbacks: Sequence[Callback] | None = None,
        world: World | None = None,
        console: Console | None = None,
        quiet: bool = False,
    ) -> None:
        self.model, self.cfg, self.loss_fn, self.evaluate = model.to(device), cfg, loss_fn, evaluate
        self.world = world or World()
        self.trained = self.world.wrap(self.model, device)  # what the loss runs: DDP under torchrun
        self.device = device
        self.callbacks = [BestEpoch()] if callbacks is None else list(callbacks)
        self.console, self.quiet = console or Console(stderr=True), quiet
        if device.type == "cpu":
            runtime.keep_freed_memory()
        asked = resolve_precision(device, cfg.precision)
        missing = missing_for(device, asked)
        self.precision = "fp32" if missing else asked  # what the steps run in
        if missing and not quiet:
            self.console.print(
                f"[yellow]warning:[/] train.precision={cfg.precision!r}: {escape(missing)}; "
                "training in fp32"
            )
        self.params = list(model.parameters())
        on_gpu = device.type == "cuda"
        # A cosine schedule under CUDA graphs changes the rate in a tensor the graphs read.
        tensor_lr = on_gpu and cfg.cuda_graphs and cfg.schedule == "cosine"
        self.optimizer = build_optimizer(
            self.params, cfg, capturable=on_gpu, lr_on=device if tensor_lr else None
        )
        # fp16 needs loss scaling against gradient underflow; bf16 has fp32's range and does not.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.schedule: Any = None
        self.graphs: StepGraphs | None = None
        self.state: dict[str, Any] = fresh_state(cfg.monitor)
        self.best: dict[str, Tensor] | None = None
        self.carry: Any = None
        self.improved = False
        self.stop = False
        self.batches_per_epoch = 0
        self._total: Tensor | None = (
            None  # the epoch's summed loss, on the device (no sync per step)
        )
        self._since = 0.0  # when the epoch's current stretch of training began

    # -- the step ----------------------------------------------------------------------------
    def _clip(self) -> Tensor:
        """Clip the gradients as configured; returns their total norm (before clipping)."""
        if self.cfg.clip_value is not None:
            nn.utils.clip_grad_value_(self.params, self.cfg.clip_value)
        if self.cfg.clip_norm is not None:
            return nn.utils.clip_grad_norm_(self.params, self.cfg.clip_norm)
        # Only the norm, for the divergence check: clip_grad_norm_ with no limit would still
        # rescale every gradient by 1.
        grads = [p.grad for p in self.params if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))

    def _step(
        self, batch: Batch, carry: Any, stateful: bool, epoch: int, step: int, share: float = 1.0
    ) -> tuple[Tensor, Any]:
        if self.graphs is not None:
            loss, carry = self.graphs(batch), None
        else:
            # Checked before the update, so the weights (and the last checkpoint) stay good. On
            # the CPU the check costs nothing; on a GPU it would sync every step, so there the
            # epoch's loss is checked at its end instead. fp16's loss scaler handles infinite
            # gradients itself.
            loss, carry = self._update(
                batch, carry, share, check_at=(epoch, step) if self.device.type == "cpu" else None
            )
        if self.schedule is not None:
            self.schedule.step()
        return loss, detach_state(carry) if stateful else None

    def _update(
        self,
        batch: Batch,
        carry: Any = None,
        share: float = 1.0,
        check_at: tuple[int, int] | None = None,
    ) -> tuple[Tensor, Any]:
        """One optimizer step on ``batch``: forward, backward, clipping, update; the loss.

        With ``check_at`` (epoch, step), a non-finite loss or gradient stops training first.
        """
        with autocast(self.device, self.precision, cache=self.graphs is None):
            loss, carry = self.loss_fn(self.trained, batch, carry)
        # What optimizer.zero_grad does, without its per-call wrappers.
        for param in self.params:
            param.grad = None
        # DDP averages the processes' gradients; weighting each by its share of the global batch
        # makes that average the gradient of the global batch's mean loss, even for uneven slices.
        self.scaler.scale(loss * share if share != 1.0 else loss).backward()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        norm = self._clip()
        if check_at is not None:
            self._check(loss, norm, *check_at)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), carry

    def _check(self, loss: Tensor, norm: Tensor, epoch: int, step: int) -> None:
        if not torch.isfinite(loss):
            raise self._diverged(epoch, step, f"the loss is {loss.detach().item()}")
        if not self.scaler.is_enabled() and not torch.isfinite(norm):
            raise self._diverged(epoch, step, f"the gradient norm is {float(norm)}")

    def _diverged(self, epoch: int, step: int, value: object) -> Diverged:
        return Diverged(
            f"training diverged at epoch {epoch + 1}, step {step}: {value}; "
            "try train.clip_norm (e.g. 1.0) or a lower train.lr"
        )

    def _graphs_failed(self, why: str) -> None:
        if not self.quiet:
            self.console.print(
                f"[yellow]warning:[/] CUDA graphs switched off ({escape(why)}); training goes on "
                "without them; --set train.cuda_graphs=false skips the attempt"
            )

    def _graphable(self, train: Batches) -> bool:
        """Whether CUDA graphs can record this run's steps (``train.cuda_graphs``, on a GPU).

        Not for: stateful sources (the carried state changes the graph's inputs), the one-cycle
        schedule (it also cycles the momentum, which a graph would freeze; a cosine schedule
        changes the rate in a tensor the graph reads), fp16 (its loss scaler reads the gradients
        on the host) and several processes (DDP's hooks).
        """
        return (
            self.cfg.cuda_graphs
            and self.device.type == "cuda"
            and not train.stateful
            and self.cfg.schedule != "onecycle"
            and self.precision != "fp16"
            and self.world.size == 1
        )

    def _validate(self) -> dict[str, float]:
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.evaluate(self.model)

    def sync_epoch(self) -> None:
        """Bring the epoch's running loss and time into ``state`` (a checkpoint mid-epoch)."""
        if self._total is not None:
            self.state["epoch_loss"] = float(self._total)
        now = time.perf_counter()
        self.state["epoch_seconds"] += now - self._since
        self._since = now

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, train: Batches, resume: bool = False) -> FitResult:
        """Train for ``cfg.epochs`` epochs, or until a callback stops it.

        With ``resume``, a callback (:class:`~rnnlab.training.callbacks.Checkpointing`) loads the
        training state it saved: on the CPU the result is identical to a run never interrupted.
        """
        train = train.to(self.device)
        self.batches_per_epoch = len(train)
        self.schedule = build_schedule(self.optimizer, self.cfg, self.cfg.epochs * len(train))
        self.graphs = None
        if self._graphable(train):
            self.graphs = StepGraphs(lambda batch: self._update(batch)[0], self._graphs_failed)
        error: BaseException | None = None
        try:
            for callback in self.callbacks:
                callback.on_fit_start(self, resume)
            self._loop(train)
        except BaseException as raised:
            error = raised
            raise
        finally:
            for callback in self.callbacks:
                callback.on_fit_end(self, error)
        s = self.state
        stopped_early = self.stop
        return FitResult(
            s["history"], s["best_epoch"], s["best_value"], s["train_seconds"], stopped_early
        )

    def _loop(self, train: Batches) -> None:
        s = self.state
        while s["epoch"] < self.cfg.epochs:
            epoch = s["epoch"]
            self.model.train()
            self._total = torch.tensor(s["epoch_loss"], device=self.device)
            self._since = time.perf_counter()
            for whole in itertools.islice(train.epoch(epoch), s["step"], None):
                batch, n = self.world.shard(whole)
                share = self.world.size * n / batch_size_of(whole)
                try:
                    loss, self.carry = self._step(
                        batch, self.carry, train.stateful, epoch, s["step"] + 1, share
                    )
                except RuntimeError:
                    for callback in self.callbacks:
                        callback.on_step_error(self, epoch, s["step"])
                    raise
                s["step"] += 1
                self._total += loss * n
                s["epoch_seen"] += n
                for callback in self.callbacks:
                    callback.on_batch_end(self, epoch, s["step"])
            # The GPU runs behind the host: time the epoch's work, not its queueing.
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds = s["epoch_seconds"] + time.perf_counter() - self._since
            loss_sum, seen = self.world.sum(
                torch.stack(
                    [
                        self._total.double(),
                        self._total.new_tensor(s["epoch_seen"], dtype=torch.double),
                    ]
                )
            ).tolist()
            mean = loss_sum / max(seen, 1)
            if not math.isfinite(mean):
                raise self._diverged(epoch, s["step"], f"mean loss {mean}")
            self.model.eval()
            # Every process needs the same metrics (early stopping, the best epoch): rank 0
            # computes them with the cores of all, rather than each on its own share.
            metrics = self.world.on_main(self._validate)
            row = {"epoch": epoch + 1, "train_loss": mean, **metrics, "seconds": seconds}
            s["history"].append(row)
            s["train_seconds"] += seconds
            s.update(epoch=epoch + 1, step=0, epoch_loss=0.0, epoch_seen=0, epoch_seconds=0.0)
            self.carry = None  # truncated BPTT starts every epoch from a zero state
            self.improved = False
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch + 1, row)
            if self.stop:
                break
