"""What every task shares: the recipe's steps, and the one function that runs them.

A task is a story in four steps (data -> model -> training -> what it learned). Subclasses fill in
:meth:`Task.load`, :meth:`Task.build_model`, :meth:`Task.loss` and :meth:`Task.evaluate`;
:func:`run` wires them to the trainer and writes the run directory.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from torch import Tensor, nn

import rnnlab
from rnnlab import plots
from rnnlab.config import Config, ModelConfig, TrainConfig, load_config
from rnnlab.data.registry import quiet_downloads
from rnnlab.distributed import World
from rnnlab.errors import RnnlabError
from rnnlab.rundir import (
    ModelMeta,
    load_model_meta,
    load_weights,
    new_run_dir,
    parameter_count,
    save_model,
    write_csv,
    write_json,
    write_text,
)
from rnnlab.train import Batch, Batches, Callback, TensorBatches, Trainer, resolve_device

Split = dict[str, Tensor]


class Task:
    """One lab task. Class attributes name it and its config sections; instances hold its data.

    After :meth:`load`, ``splits`` maps ``"train"``, ``"val"``, ``"test"`` to dicts of tensors with a
    shared first dimension, and ``meta`` holds everything JSON-able a saved model needs to be
    rebuilt without the data (sizes, vocabularies, scalers, class names).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    Data: ClassVar[type]
    Model: ClassVar[type] = ModelConfig
    Train: ClassVar[type] = TrainConfig
    # How an ensemble of runs combines the model's outputs (rnnlab.ensemble): "probabilities"
    # for class logits, "mean" for values; None where averaging means nothing.
    combine: ClassVar[Literal["probabilities", "mean"] | None] = None

    def __init__(self, cfg: Config, data_dir: Path | None = None) -> None:
        self.cfg, self.data_dir = cfg, data_dir
        self.splits: dict[str, Split] = {}
        self.meta: dict[str, Any] = {}
        self.device = torch.device("cpu")

    @classmethod
    def config(cls, path: Path | None = None, overrides: Sequence[str] = ()) -> Config:
        """The task's configuration: packaged defaults, then ``path``, then ``--set`` overrides."""
        sections = {"data": cls.Data, "model": cls.Model, "train": cls.Train}
        return load_config(cls.name, sections, path, overrides)

    # -- the recipe's steps ------------------------------------------------------------------
    def load(self) -> None:
        """Read the data into ``splits`` and fill ``meta``."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        """A fresh model for ``cfg.model`` and ``meta``."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch, state: Any) -> tuple[Tensor, Any]:
        """Training loss of one batch (and the carried state, for stateful sources)."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics on a split, keys prefixed with the split's name (``val_loss``, ``test_r2``...)."""
        raise NotImplementedError

    def prepare_training(self) -> str | None:
        """What training needs beyond ``splits`` and evaluation does not (a student's soft targets);
        returns a line for the user saying what was prepared, if anything."""
        return None

    def train_batches(self) -> Batches:
        """The training data as mini-batches (shuffled each epoch, seeded)."""
        cfg = self.cfg.train
        return TensorBatches(self.splits["train"], cfg.batch_size, shuffle=True, seed=cfg.seed)

    def callbacks(self, run_dir: Path) -> tuple[Callback, ...]:
        """Per-epoch extensions of the training loop (samples, plots...)."""
        return ()

    def report(self, run_dir: Path, model: nn.Module) -> dict[str, Any]:
        """Task-specific files (plots, report.json) after training; returns extra metrics."""
        return {}

    def predict(self, model: nn.Module, inputs: list[str]) -> list[dict[str, Any]]:
        """Answer raw user inputs (texts, questions, files): one dict of columns per answer."""
        raise RnnlabError(f"task {self.name!r} does not answer text inputs; try `rnnlab eval`")

    # -- shared helpers ------------------------------------------------------------------------
    def to(self, device: torch.device) -> None:
        """Move every split to ``device`` once, so no batch is copied from the host in the loop."""
        self.device = device
        self.splits = {
            name: {k: t.to(device) for k, t in split.items()} for name, split in self.splits.items()
        }

    def outputs(self, model: nn.Module, split: str | Batch, fn=None) -> Tensor:
        """Run ``fn(model, batch)`` (default: ``model(**inputs)``) in eval batches over a split,
        named or given as its tensors (new inputs to predict)."""
        fn = fn or (lambda m, b: m(b["x"], b.get("lengths")))
        tensors = self.splits[split] if isinstance(split, str) else split
        batches = TensorBatches(tensors, self.cfg.train.eval_batch_size, shuffle=False).epoch()
        with torch.inference_mode():
            return torch.cat([fn(model, batch).float() for batch in batches])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: the same seed gives the same run on the CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_deterministic() -> None:
    """Ask CUDA for reproducible kernels (``train.deterministic``); the CPU path already is.

    cuDNN picks fixed algorithms, cuBLAS a fixed workspace, and any op without a deterministic
    implementation raises instead of silently varying between runs.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


def run(
    task_cls: type[Task],
    cfg: Config,
    out: Path | None = None,
    device: str = "auto",
    quiet: bool = False,
    data_dir: Path | None = None,
    extra_callbacks: tuple[Callback, ...] = (),
    console: Console | None = None,
    resume: bool = False,
    resume_hint: str | None = None,
) -> Path:
    """Train ``task_cls`` with ``cfg`` and write its run directory; returns the directory.

    With ``resume``, ``out`` is an existing run directory whose ``last/`` checkpoint is continued.
    ``resume_hint``: the command that continues the work if a signal stops it (a study's own).
    Under torchrun every process trains its slice of each batch and rank 0 writes the directory.
    """
    target = resolve_device(device)
    world, target = World.from_env(target)
    # After a failure nobody waits for the others: they may never arrive (and the launcher
    # stops them when one process fails).
    run_dir = _run(
        task_cls, cfg, out, target, quiet, data_dir, extra_callbacks, console, resume, world,
        resume_hint,
    )  # fmt: skip
    world.done()
    return run_dir


def _run(
    task_cls: type[Task],
    cfg: Config,
    out: Path | None,
    target: torch.device,
    quiet: bool,
    data_dir: Path | None,
    extra_callbacks: tuple[Callback, ...],
    console: Console | None,
    resume: bool,
    world: World,
    resume_hint: str | None,
) -> Path:
    main = world.is_main  # under torchrun only rank 0 writes files and talks
    if console is None or not main:
        console = Console(stderr=True, quiet=quiet or not main)
    if cfg.train.deterministic:
        make_deterministic()
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    task = task_cls(cfg, data_dir)
    # --quiet: nothing on the terminal, a first download included.
    with quiet_downloads(quiet or not main):
        task.load()
    sizes = {name: next(iter(split.values())).shape[0] for name, split in task.splits.items()}
    if not all(sizes.values()):
        shown = ", ".join(f"{name} {n}" for name, n in sizes.items())
        raise RnnlabError(
            f"{cfg.task}: a data split is empty ({shown} examples); more data is needed"
        )
    task.to(target)
    prepared = task.prepare_training()
    if prepared:
        console.print(prepared, soft_wrap=True, markup=False, highlight=False)
    sizes["train"] = len(next(iter(task.splits["train"].values())))  # a transfer set's, if any
    seed_everything(cfg.train.seed)  # the model's initial weights do not depend on data loading
    model = task.build_model()
    made = str(out if resume else new_run_dir(cfg.task, out)) if main else None
    run_dir = Path(world.broadcast(made))
    if main and not resume:
        write_text(run_dir / "config.toml", cfg.with_absolute_paths().to_toml())
    trainer = Trainer(
        model,
        cfg.train,
        task.loss,
        lambda m: task.evaluate(m, "val"),
        target,
        callbacks=task.callbacks(run_dir) + extra_callbacks if main else (),
        quiet=quiet or not main,
        console=console,
        checkpoint_dir=run_dir / "last",
        resume_hint=resume_hint or f"rnnlab run {cfg.task} --resume {run_dir}",
        world=world,
    )
    console.print(
        f"[bold]{cfg.task}[/]: {'resuming, ' if resume else ''}"
        f"{parameter_count(model):,} parameters on {target}"
        f"{f' x {world.size} processes' if world.size > 1 else ''}, {trainer.precision}, "
        f"{sizes['train']:,} training examples -> {escape(str(run_dir))}",
        soft_wrap=True,  # one line in a log, the run's folder whole
    )
    result = trainer.fit(task.train_batches(), resume=resume)
    if not main:
        return run_dir
    write_csv(run_dir / "history.csv", result.history)
    with world.all_cores():  # the others wait for rank 0 to write: it may use their cores
        model.eval()
        started = time.perf_counter()
        metrics = task.evaluate(model, "test")
        metrics.update(task.report(run_dir, model))
        metrics.update(
            train_seconds=round(result.train_seconds, 3),
            eval_seconds=round(time.perf_counter() - started, 3),
            epochs=len(result.history),
            best_epoch=result.best_epoch,
            train_examples=sizes["train"],
            parameters=parameter_count(model),
            device=str(target),
            precision=trainer.precision,  # fp32 where the CPU lacks what train.precision asked
            # Whether the training steps were replayed as CUDA graphs (rnnlab.graphs).
            cuda_graphs=trainer.graphs is not None
            and trainer.graphs.failure is None
            and trainer.graphs.replays > 0,
            processes=world.size,
            rnnlab_version=rnnlab.__version__,
        )
        save_model(run_dir, model, {"task": cfg.task, **task.meta})
        write_json(run_dir / "metrics.json", metrics)
        plots.learning_curves(
            result.history, run_dir / "learning_curves.png", cfg.task, result.best_epoch
        )
    return run_dir


def restore(task_cls: type[Task], run_dir: Path, device: str = "auto") -> tuple[Task, nn.Module]:
    """Rebuild a trained task's model from its run directory (no data needed)."""
    meta = load_model_meta(run_dir)
    if meta.get("task") != task_cls.name:
        raise RnnlabError(
            f"{run_dir}: holds a model for task {meta.get('task')!r}, not {task_cls.name!r}"
        )
    cfg = task_cls.config(run_dir / "config.toml")
    task = task_cls(cfg)
    task.meta = ModelMeta(
        meta.path, {k: v for k, v in meta.items() if k not in ("format_version", "task")}
    )
    target = resolve_device(device)
    task.device = target
    model = task.build_model()
    load_weights(run_dir, model)
    return task, model.to(target).eval()
