"""What every task shares: the recipe's steps, and the one function that runs them.

A task is a story in four steps (data -> model -> training -> what it learned). Subclasses fill in
:meth:`Task.load`, :meth:`Task.build_model`, :meth:`Task.loss` and :meth:`Task.evaluate`;
:func:`run` wires them to the trainer and writes the run directory.
"""

from __future__ import annotations

import contextlib
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
from rnnlab import checkpoint, plots, runtime
from rnnlab.cells import GATE_COUNT
from rnnlab.config import Config, ModelConfig, TrainConfig, load_config
from rnnlab.data.registry import quiet_downloads
from rnnlab.distributed import World
from rnnlab.errors import RnnlabError
from rnnlab.recurrent import Recurrent
from rnnlab.rundir import (
    ModelMeta,
    load_model_meta,
    load_weights,
    new_run_dir,
    parameter_count,
    run_lock,
    save_model,
    write_csv,
    write_json,
    write_text,
)
from rnnlab.schema import read_entries
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
    # The schema of ``meta`` as model.json keeps it (a TypedDict), checked when a model is loaded.
    Meta: ClassVar[Any] = None

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

    def steps(self) -> int:
        """The longest sequence one training example runs through recurrent layers: inputs and
        targets' time axes (for the memory estimate before a model is built)."""
        split = self.splits["train"]
        return sum(t.shape[1] for k, t in split.items() if k in ("x", "y") and t.dim() >= 2) or 1

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

    def check_meta(self, path: Path) -> None:
        """Checks of a loaded ``meta`` (read from ``path``) that its types cannot express: a
        vocabulary that parses, a scaler that divides by more than 0."""

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
    recorded = checkpoint.recorded_run(out / "last") if resume and out is not None else {}
    if resume and out is not None and "config" in recorded:
        check_same_config(out, cfg, recorded["config"])
    threads = _threads(target, cfg, recorded.get("threads"))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads.count)
    try:
        return _train(
            task_cls, cfg, out, target, quiet, data_dir, extra_callbacks, console, resume,
            world, resume_hint, threads,
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)


def _threads(target: torch.device, cfg: Config, resumed: int | None) -> runtime.Threads:
    """This run's CPU threads: set, resumed, or chosen from the CPUs free (see
    :func:`rnnlab.runtime.choose_threads`); as the launcher set them for a run of several
    processes, and torch's own count on a GPU."""
    if os.environ.get("OMP_NUM_THREADS") or target.type != "cpu":
        count = torch.get_num_threads()
        return runtime.Threads(count, runtime.usable_cpus(), 0.0, "set for each process")
    return runtime.choose_threads(cfg.train.threads, resumed)


def training_bytes(model: nn.Module, batch_size: int, steps: int) -> int:
    """About the memory training ``model`` takes: weights, gradients and two optimizer moments,
    and what backpropagation keeps of every recurrent step (its gates, state and output)."""
    params = sum(p.numel() for p in model.parameters())
    per_step = sum(
        m.layers * m.directions * m.hidden_size * (GATE_COUNT[m.cell] + 2)
        for m in model.modules()
        if isinstance(m, Recurrent)
    )
    return 4 * (4 * params + batch_size * steps * per_step)


def check_fits(task: Task, target: torch.device) -> None:
    """Refuse, in one line, a model and batch that cannot fit the memory free, before building
    it: the model is built on the meta device (shapes, no memory) to count its weights."""
    t, m = task.cfg.train, task.cfg.model
    try:
        with torch.device("meta"):
            probe = task.build_model()
    except RnnlabError as err:  # weights alone too large (rnnlab.Recurrent)
        raise RnnlabError(f"model.hidden={m.hidden}, model.layers={m.layers}: {err}") from None
    need = training_bytes(probe, t.batch_size, task.steps())
    free = runtime.available_memory(target)
    if free is not None and need > free:
        raise RnnlabError(
            f"model.hidden={m.hidden}, model.layers={m.layers}, train.batch_size={t.batch_size}: "
            f"training needs about {runtime.gigabytes(need)} ({parameter_count(probe):,} "
            f"parameters, their gradients and optimizer state, and the steps backpropagation "
            f"keeps), more than the {runtime.gigabytes(free)} free on {target}; lower one of them"
        )


def check_same_config(run_dir: Path, cfg: Config, recorded: dict[str, Any]) -> None:
    """A resumed run continues exactly as it started: its ``config.toml`` must still say what its
    checkpoint recorded; the first key that differs is a one-line error."""

    def flat(config: dict[str, Any]) -> dict[str, Any]:
        return {
            f"{section}.{key}": value
            for section, values in config.items()
            if isinstance(values, dict)
            for key, value in values.items()
        }

    now, then = flat(cfg.with_absolute_paths().to_dict()), flat(recorded)
    for key in sorted(now.keys() | then.keys()):
        if now.get(key) != then.get(key):
            shown = {
                k: "not set" if v is None else repr(v)
                for k, v in (("now", now.get(key)), ("then", then.get(key)))
            }
            raise RnnlabError(
                f"{run_dir / 'config.toml'}: {key} is {shown['now']}, but the run was trained "
                f"with {shown['then']}; a resumed run continues as it started: set it back, or "
                f"start a new run with --config {run_dir / 'config.toml'}"
            )


def _train(
    task_cls: type[Task],
    cfg: Config,
    out: Path | None,
    target: torch.device,
    quiet: bool,
    data_dir: Path | None,
    extra_callbacks: tuple[Callback, ...],
    console: Console,
    resume: bool,
    world: World,
    resume_hint: str | None,
    threads: runtime.Threads,
) -> Path:
    main = world.is_main
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
    check_fits(task, target)
    seed_everything(cfg.train.seed)  # the model's initial weights do not depend on data loading
    model = task.build_model()
    made = str(out if resume else new_run_dir(cfg.task, out)) if main else None
    run_dir = Path(world.broadcast(made))
    with run_lock(run_dir) if main else contextlib.nullcontext():
        if main and not resume:
            write_text(run_dir / "config.toml", cfg.with_absolute_paths().to_toml())
        return _fit_and_write(
            task, model, cfg, run_dir, target, quiet, extra_callbacks, console, resume, world,
            resume_hint, threads, sizes["train"],
        )  # fmt: skip


def _fit_and_write(
    task: Task,
    model: nn.Module,
    cfg: Config,
    run_dir: Path,
    target: torch.device,
    quiet: bool,
    extra_callbacks: tuple[Callback, ...],
    console: Console,
    resume: bool,
    world: World,
    resume_hint: str | None,
    threads: runtime.Threads,
    train_examples: int,
) -> Path:
    main = world.is_main
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
        run_info={"config": cfg.with_absolute_paths().to_dict(), "threads": threads.count},
    )
    on = f"{target} ({threads.describe()})" if target.type == "cpu" else str(target)
    console.print(
        f"[bold]{cfg.task}[/]: {'resuming, ' if resume else ''}"
        f"{parameter_count(model):,} parameters on {escape(on)}"
        f"{f' x {world.size} processes' if world.size > 1 else ''}, {trainer.precision}, "
        f"{train_examples:,} training examples -> {escape(str(run_dir))}",
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
            train_examples=train_examples,
            parameters=parameter_count(model),
            device=str(target),
            precision=trainer.precision,  # fp32 where the CPU lacks what train.precision asked
            # Whether the training steps were replayed as CUDA graphs (rnnlab.graphs).
            cuda_graphs=trainer.graphs is not None
            and trainer.graphs.failure is None
            and trainer.graphs.replays > 0,
            processes=world.size,
            threads=threads.count,
            rnnlab_version=rnnlab.__version__,
        )
        save_model(run_dir, model, {"task": cfg.task, **task.meta})
        plots.learning_curves(
            result.history, run_dir / "learning_curves.png", cfg.task, result.best_epoch
        )
        # Last: metrics.json marks a finished run, so every other file is whole before it exists.
        write_json(run_dir / "metrics.json", metrics)
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
    entries = {k: v for k, v in meta.items() if k not in ("format_version", "task")}
    if task_cls.Meta is not None:
        read_entries(meta.path, entries, task_cls.Meta)
    task.meta = ModelMeta(meta.path, entries)
    task.check_meta(meta.path)
    target = resolve_device(device)
    task.device = target
    try:
        model = task.build_model()
    except (ValueError, TypeError, KeyError) as err:
        raise RnnlabError(
            f"{meta.path}: describes a model that cannot be built ({' '.join(str(err).split())}); "
            "the file is damaged or not rnnlab's"
        ) from None
    load_weights(run_dir, model)
    return task, model.to(target).eval()
