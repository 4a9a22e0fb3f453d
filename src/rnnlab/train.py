"""The one training loop every task shares.

A task hands the :class:`Trainer` a model, a batch source, a loss function and an evaluation
function; the trainer owns everything else: optimizer and schedule, clipping, the carried state of
truncated BPTT, validation, best-checkpoint selection, early stopping, progress and callbacks.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn

from rnnlab.config import TrainConfig
from rnnlab.errors import RnnlabError

Batch = dict[str, Tensor]
LossFn = Callable[[nn.Module, Batch, Any], tuple[Tensor, Any]]
EvalFn = Callable[[nn.Module], dict[str, float]]

# Metrics whose name ends with one of these improve downwards; every other one upwards.
_LOWER_IS_BETTER = ("loss", "mse", "mae", "bpc", "perplexity")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is an improvement (losses, errors, bits per char)."""
    return metric.endswith(_LOWER_IS_BETTER)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise RnnlabError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RnnlabError(f"--device {device}: no CUDA device is available on this machine")
    return torch.device(device)


class Batches(Protocol):
    """A source of mini-batches: iterate one epoch with :meth:`epoch`."""

    stateful: bool

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[Batch]: ...

    def to(self, device: torch.device) -> Batches: ...


class TensorBatches:
    """Mini-batches taken by index from tensors held in memory (no per-item collation).

    Every tensor shares its first dimension. The order of each epoch comes from ``seed + epoch``,
    so a run is reproducible and an epoch can be replayed on resume.
    """

    stateful = False

    def __init__(
        self, tensors: dict[str, Tensor], batch_size: int, shuffle: bool = True, seed: int = 0
    ) -> None:
        sizes = {name: t.shape[0] for name, t in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors must share their first dimension, got {sizes}")
        self.tensors, self.batch_size, self.shuffle, self.seed = tensors, batch_size, shuffle, seed
        self.size = next(iter(sizes.values()))

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def to(self, device: torch.device) -> TensorBatches:
        moved = {name: t.to(device) for name, t in self.tensors.items()}
        return TensorBatches(moved, self.batch_size, self.shuffle, self.seed)

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        if self.shuffle:
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(self.seed + epoch)
            )
            order = order.to(next(iter(self.tensors.values())).device)
        for start in range(0, self.size, self.batch_size):
            if self.shuffle:
                index = order[start : start + self.batch_size]
                yield {name: t[index] for name, t in self.tensors.items()}
            else:
                yield {name: t[start : start + self.batch_size] for name, t in self.tensors.items()}


def batch_size_of(batch: Batch) -> int:
    """Examples in a batch: the first dimension of its first tensor."""
    return next(iter(batch.values())).shape[0]


def detach_state(state: Any) -> Any:
    """Cut the graph behind a carried recurrent state (truncated BPTT)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(detach_state(s) for s in state)
    return state


def build_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """adam / adamw / sgd (+momentum) / rmsprop; rmsprop uses Keras's rho = 0.9 like the lab."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.RMSprop(
        params, lr=cfg.lr, alpha=0.9, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step learning-rate schedule over ``steps`` optimizer steps, or None if constant."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=max(steps, 1)
        )
    return None


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns: one row per epoch and where the best one was."""

    history: list[dict[str, float]]
    best_epoch: int
    best_value: float
    train_seconds: float
    stopped_early: bool


Callback = Callable[["Trainer", int, dict[str, float]], None]


class Trainer:
    """Fit a model with mini-batch gradient descent and keep the best weights on validation.

    Args:
        model: any ``nn.Module``.
        cfg: the ``[train]`` section.
        loss_fn: ``(model, batch, state) -> (loss, state)``; ``state`` is the recurrent state
            carried between batches of a stateful source (truncated BPTT), else None.
        evaluate: ``model -> {"val_...": value}``, called after every epoch in eval mode.
        device: where the model and the data live.
        callbacks: ``(trainer, epoch, row)`` after every epoch; the one way to extend the loop.
        quiet: no progress display.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        loss_fn: LossFn,
        evaluate: EvalFn,
        device: torch.device,
        callbacks: tuple[Callback, ...] = (),
        quiet: bool = False,
        console: Console | None = None,
    ) -> None:
        self.model, self.cfg, self.loss_fn, self.evaluate = model.to(device), cfg, loss_fn, evaluate
        self.device, self.callbacks, self.quiet = device, callbacks, quiet
        self.console = console or Console(stderr=True)
        self.optimizer = build_optimizer(model.parameters(), cfg)

    def _clip(self) -> None:
        if self.cfg.clip_value is not None:
            nn.utils.clip_grad_value_(self.model.parameters(), self.cfg.clip_value)
        if self.cfg.clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)

    def _train_epoch(self, batches: Batches, epoch: int, on_batch: Callable[[int], None]) -> float:
        self.model.train()
        total = torch.zeros((), device=self.device)  # summed on device: no sync per batch
        seen, state = 0, None
        for batch in batches.epoch(epoch):
            loss, state = self.loss_fn(self.model, batch, state)
            state = detach_state(state) if batches.stateful else None
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._clip()
            self.optimizer.step()
            if self.schedule is not None:
                self.schedule.step()
            n = batch_size_of(batch)
            total += loss.detach() * n
            seen += n
            on_batch(n)
        mean = float(total) / max(seen, 1)
        if not math.isfinite(mean):
            raise RnnlabError(
                f"training diverged at epoch {epoch + 1}: the mean training loss is {mean}; "
                "try train.clip_norm (e.g. 1.0) or a lower train.lr"
            )
        return mean

    def fit(self, train: Batches) -> FitResult:
        """Train for ``cfg.epochs`` epochs (or until early stopping); restore the best weights."""
        train = train.to(self.device)
        self.schedule = build_schedule(self.optimizer, self.cfg, self.cfg.epochs * len(train))
        monitor, minimize = self.cfg.monitor, lower_is_better(self.cfg.monitor)
        best_value, best_epoch, best_state = math.inf if minimize else -math.inf, 0, None
        history: list[dict[str, float]] = []
        waited, stopped_early, train_seconds = 0, False, 0.0

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=self.quiet,
            transient=True,
        )
        with progress:
            bar = progress.add_task("epoch", total=len(train), info="")
            for epoch in range(self.cfg.epochs):
                progress.reset(
                    bar, total=len(train), description=f"epoch {epoch + 1}/{self.cfg.epochs}"
                )
                start, seen = time.perf_counter(), 0

                def on_batch(n: int, start: float = start) -> None:
                    nonlocal seen
                    seen += n
                    rate = seen / max(time.perf_counter() - start, 1e-9)
                    progress.update(bar, advance=1, info=f"{rate:,.0f} samples/s")

                train_loss = self._train_epoch(train, epoch, on_batch)
                seconds = time.perf_counter() - start
                train_seconds += seconds
                self.model.eval()
                with torch.inference_mode():
                    metrics = self.evaluate(self.model)
                if monitor not in metrics:
                    raise RnnlabError(
                        f"config key train.monitor={monitor!r} is not a validation metric of this "
                        f"task (one of {', '.join(sorted(metrics))})"
                    )
                row = {"epoch": epoch + 1, "train_loss": train_loss, **metrics, "seconds": seconds}
                history.append(row)
                value = metrics[monitor]
                improved = value < best_value if minimize else value > best_value
                if improved:
                    best_value, best_epoch, waited = value, epoch + 1, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    waited += 1
                if not self.quiet:
                    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                    mark = " *" if improved else ""
                    self.console.print(
                        f"epoch {epoch + 1:>3}/{self.cfg.epochs}  loss {train_loss:.4f}  "
                        f"{shown}  {seconds:.1f}s{mark}"
                    )
                for callback in self.callbacks:
                    callback(self, epoch + 1, row)
                if self.cfg.patience is not None and waited >= self.cfg.patience:
                    stopped_early = True
                    break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return FitResult(history, best_epoch, best_value, train_seconds, stopped_early)


def tensorboard(log_dir: str) -> Callback:
    """A callback that writes every epoch's row as TensorBoard scalars (``rnnlab[tensorboard]``)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RnnlabError(
            "--tensorboard needs the tensorboard package: pip install 'rnnlab[tensorboard]'"
        ) from None
    writer = SummaryWriter(log_dir)

    def write(trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch":
                writer.add_scalar(key, value, epoch)
        writer.flush()

    return write
