"""What runs around the training loop, one concern per callback (see :class:`Callback`):

- :class:`BestEpoch`: the best epoch on the monitored metric, its weights restored at the end,
  and early stopping after ``patience`` epochs without improvement;
- :class:`ProgressDisplay`: bars for the epoch and the whole run with their ETAs, and a line per
  epoch;
- :class:`Checkpointing`: a resumable checkpoint every epoch (and every ``checkpoint_every``
  steps), written in the background; SIGINT and SIGTERM save one and stop with one line;
  ``resume`` loads it;
- :class:`HistoryFile`: ``history.csv``, rewritten after every epoch;
- :class:`TensorBoard`: every epoch's row as TensorBoard scalars.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from rich.console import Console
from rich.progress import Progress, TaskID

from rnnlab.display import progress_bars
from rnnlab.errors import RnnlabError
from rnnlab.files import write_csv
from rnnlab.schema import read_entries
from rnnlab.training import checkpoint

if TYPE_CHECKING:  # the trainer runs the callbacks; they only name its type
    from rnnlab.training.trainer import Trainer

__all__ = [
    "BestEpoch",
    "Callback",
    "Checkpointing",
    "EpochEnd",
    "HistoryFile",
    "Interrupted",
    "ProgressDisplay",
    "TensorBoard",
    "TrainingState",
]


# Metrics whose name ends with one of these improve downwards; every other one upwards.
_LOWER_IS_BETTER = ("loss", "mse", "mae", "bpc", "perplexity")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is an improvement (losses, errors, bits per char)."""
    return metric.endswith(_LOWER_IS_BETTER)


class TrainingState(TypedDict):
    """Where training stands: the counters, the history so far, the best epoch (a checkpoint
    keeps it; ``state.json``'s ``progress``)."""

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


def fresh_state(monitor: str) -> dict[str, Any]:
    """The state of a run that has not trained yet."""
    return {
        "epoch": 0,
        "step": 0,
        "history": [],
        "best_value": math.inf if lower_is_better(monitor) else -math.inf,
        "best_epoch": 0,
        "waited": 0,
        "train_seconds": 0.0,
        "epoch_loss": 0.0,
        "epoch_seen": 0,
        "epoch_seconds": 0.0,
    }


class Callback:
    """A hook into the loop; every method does nothing unless a callback overrides it.

    The loop calls, in order: :meth:`on_fit_start` (with ``resume``), then for every batch
    :meth:`on_batch_end`, for every epoch :meth:`on_epoch_end` (with the epoch's row: its
    number, training loss, validation metrics and seconds), and last :meth:`on_fit_end` (with
    the error that ended training, if any). :meth:`on_step_error` sees a step that raised.
    """

    def on_fit_start(self, trainer: Trainer, resume: bool) -> None:
        """Training starts (or resumes)."""

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int) -> None:
        """Step ``step`` (1-based, within ``epoch``, 0-based) is done."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """Epoch ``epoch`` (1-based) is done and validated."""

    def on_step_error(self, trainer: Trainer, epoch: int, step: int) -> None:
        """A step raised a ``RuntimeError`` (the loop re-raises it afterwards)."""

    def on_fit_end(self, trainer: Trainer, error: BaseException | None) -> None:
        """Training ended: done (``error`` is None), stopped or failed."""


class EpochEnd(Callback):
    """A function ``fn(trainer, epoch, row)`` called after every epoch, as a callback."""

    def __init__(self, fn: Callable[[Trainer, int, dict[str, float]], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        self.fn(trainer, epoch, row)


class BestEpoch(Callback):
    """Keep the weights of the best epoch on ``train.monitor`` (a tie to the earlier or the later
    epoch, ``train.ties``) and restore them when training ends; stop after ``train.patience``
    epochs without improvement (if set)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        s, cfg = trainer.state, trainer.cfg
        if cfg.monitor not in row or cfg.monitor in ("epoch", "train_loss", "seconds"):
            metrics = sorted(k for k in row if k not in ("epoch", "train_loss", "seconds"))
            raise RnnlabError(
                f"config key train.monitor={cfg.monitor!r} is not a validation metric of this "
                f"task (one of {', '.join(metrics)})"
            )
        value, best = row[cfg.monitor], s["best_value"]
        if cfg.ties == "later" and value == best:
            better = True  # a tie goes to the later epoch, trained longer
        else:
            better = value < best if lower_is_better(cfg.monitor) else value > best
        if better:
            s["best_value"], s["best_epoch"], s["waited"] = value, epoch, 0
            trainer.best = copy.deepcopy(trainer.model.state_dict())
        else:
            s["waited"] += 1
        trainer.improved = better
        if cfg.patience is not None and s["waited"] >= cfg.patience:
            trainer.stop = True
            s["epoch"] = cfg.epochs  # a resumed run must not train on

    def on_fit_end(self, trainer: Trainer, error: BaseException | None) -> None:
        if error is None and trainer.best is not None:
            trainer.model.load_state_dict(trainer.best)


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a progress line."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressDisplay(Callback):
    """Two bars on a terminal, the whole run's and the epoch's, each with its elapsed time and
    ETA (a resumed run counts from where it resumed); after every epoch one line with its loss,
    validation metrics and time, the run's time so far and its ETA, and ``*`` for a new best."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.run_bar: TaskID | None = None
        self.epoch_bar: TaskID | None = None
        self.shown_epoch = -1
        self.started = self.epoch_started = 0.0
        self.epochs_here = self.seen_here = 0

    def on_fit_start(self, trainer: Trainer, resume: bool) -> None:
        self.progress = progress_bars(self.console)
        per_epoch = trainer.batches_per_epoch
        self.run_bar = self.progress.add_task("run", total=trainer.cfg.epochs * per_epoch, info="")
        self.epoch_bar = self.progress.add_task("epoch", total=per_epoch, info="")
        self.started = time.perf_counter()
        self.progress.start()

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int) -> None:
        assert self.progress is not None and self.run_bar is not None
        assert self.epoch_bar is not None
        per_epoch = trainer.batches_per_epoch
        if epoch != self.shown_epoch:
            self.shown_epoch, self.seen_here = epoch, 0
            self.epoch_started = time.perf_counter()
            self.progress.reset(
                self.epoch_bar,
                total=per_epoch,
                description=f"epoch {epoch + 1}/{trainer.cfg.epochs}",
            )
        self.seen_here = trainer.state["epoch_seen"]
        rate = self.seen_here / max(time.perf_counter() - self.epoch_started, 1e-9)
        self.progress.update(self.epoch_bar, completed=step, info=f"{rate:,.0f} samples/s")
        self.progress.update(self.run_bar, completed=epoch * per_epoch + step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        self.epochs_here += 1
        metrics = {k: v for k, v in row.items() if k not in ("epoch", "train_loss", "seconds")}
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        spent = time.perf_counter() - self.started
        epochs = trainer.cfg.epochs
        left = spent / self.epochs_here * (epochs - epoch)
        eta = f"  eta {clock(left)}" if epoch < epochs and not trainer.stop else ""
        mark = " *" if trainer.improved else ""
        self.console.print(
            f"epoch {epoch:>3}/{epochs}  loss {row['train_loss']:.4f}  {shown}  "
            f"{row['seconds']:.1f}s  run {clock(spent)}{eta}{mark}"
        )

    def on_fit_end(self, trainer: Trainer, error: BaseException | None) -> None:
        if self.progress is not None:
            self.progress.stop()


class Interrupted(RnnlabError):
    """Training stopped by SIGINT/SIGTERM after saving a resumable checkpoint."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM


class Checkpointing(Callback):
    """A resumable checkpoint in ``directory`` (by rank 0 of a run of several processes): after
    every epoch, every ``train.checkpoint_every`` steps, and when SIGINT or SIGTERM arrives, which
    then stops training with one line naming ``resume_hint``. With ``resume``, the checkpoint is
    loaded first. ``run_info`` (what the run is: its config, its threads) goes into every
    checkpoint, for the checks of a resumed run.

    The state is copied at once and written by a background thread while training goes on (one
    write at a time, so the files on disk are always whole; see
    :class:`rnnlab.training.checkpoint.Writer`).
    """

    def __init__(
        self, directory: Path, resume_hint: str = "", run_info: dict[str, Any] | None = None
    ) -> None:
        self.directory, self.resume_hint, self.run_info = directory, resume_hint, run_info or {}
        self.writer = checkpoint.Writer()
        self.signal: signal.Signals | None = None
        self._handlers: dict[int, Any] = {}

    def on_fit_start(self, trainer: Trainer, resume: bool) -> None:
        if resume:
            trainer.state, trainer.best, trainer.carry = checkpoint.load(
                self.directory,
                model=trainer.model,
                optimizer=trainer.optimizer,
                schedule=trainer.schedule,
                scaler=trainer.scaler,
                device=trainer.device,
            )
            read_entries(
                self.directory / checkpoint.META, trainer.state, TrainingState, bounded=False
            )
        if threading.current_thread() is threading.main_thread():
            self._handlers = {
                s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
            }

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal = signal.Signals(signum)

    def save(self, trainer: Trainer) -> None:
        """Copy the training state now; write it in the background while training goes on."""
        if not trainer.world.is_main:  # one writer; every process resumes from it
            return
        state = checkpoint.snapshot(
            model=trainer.model,
            optimizer=trainer.optimizer,
            schedule=trainer.schedule,
            scaler=trainer.scaler,
            progress=trainer.state,
            best=trainer.best,
            carry=trainer.carry,
            run=self.run_info,
        )
        self.writer.submit(self.directory, state)

    def _stopped(self, epoch: int, step: int) -> Interrupted:
        assert self.signal is not None
        return Interrupted(
            f"stopped by {self.signal.name} at epoch {epoch + 1}, step {step}; "
            f"checkpoint saved, resume with: {self.resume_hint}",
            self.signal,
        )

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int) -> None:
        every = trainer.cfg.checkpoint_every
        if (every is not None and step % every == 0) or self.signal:
            trainer.sync_epoch()
            self.save(trainer)
        if self.signal:
            raise self._stopped(epoch, step)

    def on_step_error(self, trainer: Trainer, epoch: int, step: int) -> None:
        # Ctrl-C reaches every process of a run at once; one that stopped first leaves the
        # others' gradient exchange failing. The weights are still those of the last whole step:
        # save them and stop as the signal asked.
        if self.signal and trainer.world.size > 1:
            trainer.sync_epoch()
            self.save(trainer)
            raise self._stopped(epoch, step) from None

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        self.save(trainer)

    def on_fit_end(self, trainer: Trainer, error: BaseException | None) -> None:
        try:
            self.writer.wait()  # on the way out, also after an error: the files are whole
        finally:
            for s, handler in self._handlers.items():
                signal.signal(s, handler)
            self._handlers = {}


class HistoryFile(Callback):
    """``history.csv``: one row per epoch (loss, validation metrics, seconds), rewritten after
    every epoch, so a long run can be followed from its file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        if trainer.world.is_main:
            write_csv(self.path, trainer.state["history"])

    def on_fit_end(self, trainer: Trainer, error: BaseException | None) -> None:
        if error is None and trainer.world.is_main:  # also a resumed run with no epoch left
            write_csv(self.path, trainer.state["history"])


class TensorBoard(Callback):
    """Every epoch's row as TensorBoard scalars in ``log_dir`` (``rnnlab[tensorboard]``)."""

    def __init__(self, log_dir: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # an optional extra
            raise RnnlabError(
                "--tensorboard needs the tensorboard package: pip install 'rnnlab[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(log_dir)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, epoch)
        self.writer.flush()
