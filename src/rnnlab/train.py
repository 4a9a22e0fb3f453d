"""The one training loop every task shares.

A task hands the :class:`Trainer` a model, a batch source, a loss function and an evaluation
function; the trainer owns everything else: optimizer and schedule, clipping, the carried state of
truncated BPTT, validation, best-checkpoint selection, early stopping, progress and callbacks.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import Tensor, nn

from rnnlab import checkpoint, runtime
from rnnlab.config import TrainConfig
from rnnlab.distributed import World
from rnnlab.errors import RnnlabError
from rnnlab.graphs import StepGraphs
from rnnlab.schema import read_entries

Batch = dict[str, Tensor]
LossFn = Callable[[nn.Module, Batch, Any], tuple[Tensor, Any]]
EvalFn = Callable[[nn.Module], dict[str, float]]

# Metrics whose name ends with one of these improve downwards; every other one upwards.
_LOWER_IS_BETTER = ("loss", "mse", "mae", "bpc", "perplexity")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is an improvement (losses, errors, bits per char)."""
    return metric.endswith(_LOWER_IS_BETTER)


HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(
    device: torch.device, precision: str, cache: bool = True
) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: matmuls in bf16/fp16, the rest (and losses) in fp32.

    On CPUs with AVX-512-BF16 and on GPUs, bf16 roughly doubles the matmul rate; tasks compute
    their losses on ``.float()`` outputs so the reduction stays in fp32. ``cache=False`` casts
    the weights afresh at every use, which a CUDA graph capture requires.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=HALF[precision], cache_enabled=cache)


def resolve_precision(device: torch.device, precision: str) -> str:
    """``"auto"``: bf16 on a CPU with bf16 instructions, fp32 anywhere else; others as they are.

    Where a CPU has them, oneDNN's bf16 LSTM is the faster one at wide shapes (addition's 128
    units: 1.23-1.35x a step, benchmarks/RESULTS.md, session 15). On a GPU these small recurrent
    nets wait on kernel launches, not on arithmetic (session 5): half precision buys nothing.
    """
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and missing_for(device, "bf16") is None else "fp32"


def missing_for(device: torch.device, precision: str) -> str | None:
    """What ``device`` lacks to train in ``precision``, or None if nothing.

    A CPU without bf16 (fp16) instructions runs half-precision matmuls ~150x slower than fp32 and
    builds no half-precision LSTM at all; a GPU older than Ampere has no bf16 units.
    """
    if precision == "fp32":
        return None
    if device.type == "cpu" and not runtime.cpu_runs(HALF[precision]):
        needs = "AVX-512-BF16 or AMX" if precision == "bf16" else "AVX-512-FP16 or AMX-FP16"
        return f"this CPU has no {precision} instructions ({needs})"
    if device.type == "cuda" and precision == "bf16":
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            return (
                f"this GPU (compute capability {major}.{minor}) has no bf16 units (8.0 and newer "
                "have them); 'fp16' uses its tensor cores"
            )
    return None


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
        order = None
        if self.shuffle:
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(self.seed + epoch)
            )
        sizes = [min(self.batch_size, self.size - s) for s in range(0, self.size, self.batch_size)]
        return self._views(order, sizes)

    def _views(self, order: Tensor | None, sizes: list[int]) -> Iterator[Batch]:
        """The examples in ``order`` (None: as stored), cut into batches of ``sizes``.

        One gather per tensor and epoch, then every batch is a view: a gather per batch costs
        ~40 us of dispatch on the CPU (two of them were 4 % of air quality's step). The order
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


def detach_state(state: Any) -> Any:
    """Cut the graph behind a carried recurrent state (truncated BPTT)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(detach_state(s) for s in state)
    return state


def build_optimizer(
    params: Any, cfg: TrainConfig, capturable: bool = False, lr_on: torch.device | None = None
) -> torch.optim.Optimizer:
    """adam / adamw / sgd (+momentum) / rmsprop; rmsprop uses Keras's rho = 0.9 like the lab.

    Adam, AdamW and SGD use PyTorch's fused kernels (one kernel for all parameters, about 13 %
    off a small model's step on the CPU) where this PyTorch has them. ``capturable`` keeps the
    step counts of Adam, AdamW and RMSprop on the GPU, so a CUDA graph can record the update.
    ``lr_on``: the learning rate as a tensor on that device, which a CUDA graph reads at every
    replay (a Python float would be frozen into the graph), so a schedule can change it.
    """
    params = list(params)
    decay = cfg.weight_decay
    extra = {"capturable": True} if capturable else {}
    lr: float | Tensor = cfg.lr if lr_on is None else torch.tensor(cfg.lr, device=lr_on)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, alpha=0.9, momentum=cfg.momentum, weight_decay=decay, **extra
        )
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[
        cfg.optimizer
    ]
    kwargs = {"lr": lr, "weight_decay": decay}
    if cfg.optimizer == "sgd":
        kwargs["momentum"] = cfg.momentum
    else:
        kwargs.update(extra)
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # older PyTorch: no fused kernel on this device
        return cls(params, **kwargs)


class TensorCosine:
    """Cosine annealing to 0 over ``steps`` steps for tensor learning rates, without a host sync.

    :class:`torch.optim.lr_scheduler.CosineAnnealingLR` computes each rate from the last one,
    which it would read back from the GPU every step; this computes it from the step count
    (the closed form, the same rates) and fills the tensor in place, where a graph reads it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int) -> None:
        self.groups = optimizer.param_groups
        self.base = [float(group["lr"]) for group in self.groups]
        self.steps, self.last_epoch = max(steps, 1), 0

    def step(self) -> None:
        self.last_epoch += 1
        self._fill()

    def _fill(self) -> None:
        share = (1 + math.cos(math.pi * self.last_epoch / self.steps)) / 2
        for group, base in zip(self.groups, self.base, strict=True):
            group["lr"].fill_(base * share)

    def state_dict(self) -> dict[str, Any]:
        """CosineAnnealingLR's keys: either can continue the other's checkpoint."""
        return {"last_epoch": self.last_epoch, "base_lrs": self.base}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_epoch, self.base = state["last_epoch"], [float(b) for b in state["base_lrs"]]
        self._fill()


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps: int
) -> torch.optim.lr_scheduler.LRScheduler | TensorCosine | None:
    """A per-step learning-rate schedule over ``steps`` optimizer steps, or None if constant."""
    if cfg.schedule == "cosine":
        if isinstance(optimizer.param_groups[0]["lr"], Tensor):
            return TensorCosine(optimizer, steps)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=max(steps, 1)
        )
    return None


class TrainingState(TypedDict):
    """Where training stands: the trainer's counters and the history so far."""

    epoch: int
    step: int
    history: list[dict[str, float]]
    best_value: float
    best_epoch: int
    waited: int
    train_seconds: float
    epoch_loss: float
    epoch_seen: int
    epoch_seconds: float


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns: one row per epoch and where the best one was."""

    history: list[dict[str, float]]
    best_epoch: int
    best_value: float
    train_seconds: float
    stopped_early: bool


class Interrupted(RnnlabError):
    """Training stopped by SIGINT/SIGTERM after saving a resumable checkpoint."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM


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
        checkpoint_dir: if given, a resumable checkpoint is kept there by rank 0 (every epoch, every
            ``cfg.checkpoint_every`` steps, and on SIGINT/SIGTERM).
        resume_hint: the command that resumes this run, for messages.
        world: the training processes under torchrun; each trains on its slice of every batch.
        run_info: what the run is (config, threads), kept in every checkpoint.
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
        checkpoint_dir: Path | None = None,
        resume_hint: str = "",
        world: World | None = None,
        run_info: dict[str, Any] | None = None,
    ) -> None:
        self.run_info = run_info or {}
        self.model, self.cfg, self.loss_fn, self.evaluate = model.to(device), cfg, loss_fn, evaluate
        self.world = world or World()
        self.trained = self.world.wrap(self.model, device)  # what the loss runs: DDP under torchrun
        self.device, self.callbacks, self.quiet = device, callbacks, quiet
        self.console = console or Console(stderr=True)
        self.checkpoint_dir, self.resume_hint = checkpoint_dir, resume_hint
        if device.type == "cpu":
            runtime.keep_freed_memory()
        asked = resolve_precision(device, cfg.precision)
        missing = missing_for(device, asked)
        self.precision = "fp32" if missing else asked  # what the steps run in
        if missing:
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
        self.schedule = None
        self.graphs: StepGraphs | None = None
        self._signal: signal.Signals | None = None
        self._writer = checkpoint.Writer()

    def _clip(self) -> Tensor:
        """Clip the gradients as configured; returns their total norm (before clipping)."""
        if self.cfg.clip_value is not None:
            nn.utils.clip_grad_value_(self.params, self.cfg.clip_value)
        if self.cfg.clip_norm is not None:
            return nn.utils.clip_grad_norm_(self.params, self.cfg.clip_norm)
        # Only the norm, for the divergence check: clip_grad_norm_ with no limit would still
        # rescale every gradient by 1 (a quarter of sentiment's non-LSTM step time).
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
        # What optimizer.zero_grad does, without its per-call wrappers (30 us, 1.5 % of a small
        # model's CPU step).
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

    def _graphs_failed(self, why: str) -> None:
        self.console.print(
            f"[yellow]warning:[/] CUDA graphs switched off ({escape(why)}); training goes on without them; "
            "--set train.cuda_graphs=false skips the attempt"
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

    def _diverged(self, epoch: int, step: int, value: object) -> RnnlabError:
        saved = self.checkpoint_dir is not None and checkpoint.exists(self.checkpoint_dir)
        kept = f"; the last good checkpoint is in {self.checkpoint_dir}" if saved else ""
        return RnnlabError(
            f"training diverged at epoch {epoch + 1}, step {step}: {value}{kept}; "
            "try train.clip_norm (e.g. 1.0) or a lower train.lr"
        )

    def _save(self, progress: dict[str, Any], best: dict[str, Tensor] | None, carry: Any) -> None:
        """Copy the training state now; write it in the background while training goes on.

        Writing and syncing to disk take 3-15 ms an epoch, 2-9 % of a small task's run; the copy
        takes well under one. One write at a time, so the files on disk are always whole.
        """
        if self.checkpoint_dir is not None and self.world.is_main:  # one writer; all resume
            state = checkpoint.snapshot(
                model=self.model,
                optimizer=self.optimizer,
                schedule=self.schedule,
                scaler=self.scaler,
                progress=progress,
                best=best,
                carry=carry,
                run=self.run_info,
            )
            self._writer.submit(self.checkpoint_dir, state)

    def _stopped(self, epoch: int, step: int) -> Interrupted:
        """What to raise once the checkpoint of a run stopped by a signal is saved."""
        assert self._signal is not None
        return Interrupted(
            f"stopped by {self._signal.name} at epoch {epoch + 1}, step {step}; "
            f"checkpoint saved, resume with: {self.resume_hint}",
            self._signal,
        )

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signal.Signals(signum)

    def fit(self, train: Batches, resume: bool = False) -> FitResult:
        """Train for ``cfg.epochs`` epochs (or until early stopping); restore the best weights.

        With ``resume``, continue from the checkpoint in ``checkpoint_dir``: on the CPU the result
        is identical to a run that was never interrupted.
        """
        train = train.to(self.device)
        self.schedule = build_schedule(self.optimizer, self.cfg, self.cfg.epochs * len(train))
        self.graphs = None
        if self._graphable(train):
            self.graphs = StepGraphs(lambda batch: self._update(batch)[0], self._graphs_failed)
        monitor, minimize = self.cfg.monitor, lower_is_better(self.cfg.monitor)
        p: dict[str, Any] = {
            "epoch": 0,
            "step": 0,
            "history": [],
            "best_value": math.inf if minimize else -math.inf,
            "best_epoch": 0,
            "waited": 0,
            "train_seconds": 0.0,
            "epoch_loss": 0.0,
            "epoch_seen": 0,
            "epoch_seconds": 0.0,
        }
        best, carry = None, None
        if resume:
            if self.checkpoint_dir is None:
                raise ValueError("resume needs a checkpoint_dir")
            p, best, carry = checkpoint.load(
                self.checkpoint_dir,
                model=self.model,
                optimizer=self.optimizer,
                schedule=self.schedule,
                scaler=self.scaler,
                device=self.device,
            )
            read_entries(self.checkpoint_dir / checkpoint.META, p, TrainingState, bounded=False)
        handlers = {}
        if (
            self.checkpoint_dir is not None
            and threading.current_thread() is threading.main_thread()
        ):
            handlers = {
                s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
            }
        try:
            try:
                return self._loop(train, p, best, carry, monitor, minimize)
            finally:
                self._writer.wait()  # on the way out, also after an error: the files are whole
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)

    def _loop(
        self,
        train: Batches,
        p: dict[str, Any],
        best: dict[str, Tensor] | None,
        carry: Any,
        monitor: str,
        minimize: bool,
    ) -> FitResult:
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            disable=self.quiet,
            transient=True,
        )
        check_every = self.cfg.checkpoint_every
        stopped_early = False
        # The whole run's time and its end, from the epochs this process trained (a resumed run
        # counts from where it resumed).
        started, epochs_here = time.perf_counter(), 0
        with progress:
            run_bar = progress.add_task(
                "run",
                total=self.cfg.epochs * len(train),
                completed=p["epoch"] * len(train) + p["step"],
                info="",
            )
            bar = progress.add_task("epoch", total=len(train), info="")
            while p["epoch"] < self.cfg.epochs:
                epoch = p["epoch"]
                progress.reset(
                    bar, total=len(train), description=f"epoch {epoch + 1}/{self.cfg.epochs}"
                )
                progress.update(bar, completed=p["step"])
                self.model.train()
                total = torch.tensor(p["epoch_loss"], device=self.device)  # no sync per batch
                start, seen_here = time.perf_counter(), 0
                batches = itertools.islice(train.epoch(epoch), p["step"], None)
                for whole in batches:
                    batch, n = self.world.shard(whole)
                    share = self.world.size * n / batch_size_of(whole)
                    try:
                        loss, carry = self._step(
                            batch, carry, train.stateful, epoch, p["step"] + 1, share
                        )
                    except RuntimeError:
                        # Ctrl-C reaches every process of a run at once; one that stopped first
                        # leaves the others' gradient exchange failing. The weights are still those
                        # of the last whole step: save them and stop as the signal asked.
                        if not (self._signal and self.world.size > 1):
                            raise
                        p["epoch_loss"] = float(total)
                        p["epoch_seconds"] += time.perf_counter() - start
                        self._save(p, best, carry)
                        raise self._stopped(epoch, p["step"]) from None
                    p["step"] += 1
                    total += loss * n
                    p["epoch_seen"] += n
                    seen_here += n
                    elapsed = time.perf_counter() - start
                    progress.update(
                        bar, advance=1, info=f"{seen_here / max(elapsed, 1e-9):,.0f} samples/s"
                    )
                    progress.advance(run_bar)
                    due = check_every is not None and p["step"] % check_every == 0
                    if due or self._signal:
                        p["epoch_loss"] = float(total)
                        p["epoch_seconds"] += time.perf_counter() - start
                        start = time.perf_counter()
                        self._save(p, best, carry)
                    if self._signal:
                        raise self._stopped(epoch, p["step"])
                # The GPU runs behind the host: time the epoch's work, not its queueing.
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                seconds = p["epoch_seconds"] + time.perf_counter() - start
                loss_sum, seen = self.world.sum(
                    torch.stack(
                        [total.double(), total.new_tensor(p["epoch_seen"], dtype=torch.double)]
                    )
                ).tolist()
                mean = loss_sum / max(seen, 1)
                if not math.isfinite(mean):
                    raise self._diverged(epoch, p["step"], f"mean loss {mean}")
                self.model.eval()
                # Every process needs the same metrics (early stopping, the best epoch): rank 0
                # computes them with the cores of all, rather than each on its own share.
                metrics = self.world.on_main(self._validate)
                if monitor not in metrics:
                    raise RnnlabError(
                        f"config key train.monitor={monitor!r} is not a validation metric of this "
                        f"task (one of {', '.join(sorted(metrics))})"
                    )
                row = {"epoch": epoch + 1, "train_loss": mean, **metrics, "seconds": seconds}
                p["history"].append(row)
                p["train_seconds"] += seconds
                value = metrics[monitor]
                improved = value < p["best_value"] if minimize else value > p["best_value"]
                if improved:
                    p["best_value"], p["best_epoch"], p["waited"] = value, epoch + 1, 0
                    best = copy.deepcopy(self.model.state_dict())
                else:
                    p["waited"] += 1
                p.update(epoch=epoch + 1, step=0, epoch_loss=0.0, epoch_seen=0, epoch_seconds=0.0)
                carry = None  # truncated BPTT starts every epoch from a zero state
                epochs_here += 1
                if not self.quiet:
                    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                    mark = " *" if improved else ""
                    spent = time.perf_counter() - started
                    left = spent / epochs_here * (self.cfg.epochs - epoch - 1)
                    eta = f"  eta {_clock(left)}" if epoch + 1 < self.cfg.epochs else ""
                    self.console.print(
                        f"epoch {epoch + 1:>3}/{self.cfg.epochs}  loss {mean:.4f}  "
                        f"{shown}  {seconds:.1f}s  run {_clock(spent)}{eta}{mark}"
                    )
                for callback in self.callbacks:
                    callback(self, epoch + 1, row)
                if self.cfg.patience is not None and p["waited"] >= self.cfg.patience:
                    stopped_early = True
                    p["epoch"] = self.cfg.epochs  # a resumed run must not train on
                self._save(p, best, carry)
                if stopped_early:
                    break
        if best is not None:
            self.model.load_state_dict(best)
        return FitResult(
            p["history"], p["best_epoch"], p["best_value"], p["train_seconds"], stopped_early
        )


def _clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a progress line."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
