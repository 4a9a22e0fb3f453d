"""A run from start to end: load the task's data, build its model, train it, write its directory.

:func:`run` is what ``rnnlab run`` (and every study of several runs) calls. It seeds everything,
chooses the CPU threads, checks that the model fits the memory free before building it, takes the
run directory's lock, wires the task to the trainer with the callbacks a run needs (best epoch,
progress, checkpoints, history), and writes the final files, ``metrics.json`` last.
:func:`evaluate_run` recomputes a finished run's test metrics from its saved model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from torch import nn

import rnnlab
from rnnlab import plots, runtime
from rnnlab.config import Config
from rnnlab.data.registry import quiet_downloads
from rnnlab.errors import RnnlabError
from rnnlab.files import write_json, write_text
from rnnlab.nn import Recurrent
from rnnlab.runs import teachers
from rnnlab.runs.restore import restore, task_of
from rnnlab.runs.rundir import new_run_dir, parameter_count, run_lock, save_model
from rnnlab.tasks.base import Task
from rnnlab.training import checkpoint
from rnnlab.training.callbacks import (
    BestEpoch,
    Callback,
    Checkpointing,
    HistoryFile,
    ProgressDisplay,
)
from rnnlab.training.device import resolve_device
from rnnlab.training.distillation import DistillationConfig
from rnnlab.training.distributed import World
from rnnlab.training.trainer import Diverged, Trainer


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


@dataclass
class _Run:
    """What one run was asked to do, and where."""

    task_cls: type[Task]
    cfg: Config
    out: Path | None
    target: torch.device
    world: World
    console: Console
    quiet: bool
    data_dir: Path | None
    callbacks: Sequence[Callback]
    resume: bool
    resume_hint: str | None


def run(
    task_cls: type[Task],
    cfg: Config,
    out: Path | None = None,
    device: str = "auto",
    quiet: bool = False,
    data_dir: Path | None = None,
    extra_callbacks: Sequence[Callback] = (),
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
    main = world.is_main  # under torchrun only rank 0 writes files and talks
    if console is None or not main:
        console = Console(stderr=True, quiet=quiet or not main)
    plan = _Run(
        task_cls, cfg, out, target, world, console, quiet or not main, data_dir,
        extra_callbacks, resume, resume_hint,
    )  # fmt: skip
    if cfg.train.deterministic:
        make_deterministic()
    recorded = checkpoint.recorded_run(out / "last") if resume and out is not None else {}
    if resume and out is not None and "config" in recorded:
        check_same_config(out, cfg, recorded["config"])
    threads = _threads(target, cfg, recorded.get("threads"))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads.count)
    try:
        run_dir = _train(plan, threads)
    finally:
        torch.set_num_threads(previous_threads)
    # After a failure nobody waits for the others: they may never arrive (and the launcher
    # stops them when one process fails).
    world.done()
    return run_dir


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
        m.layers * m.directions * m.hidden_size * (m.spec.gate_count + 2)
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
    except RnnlabError as err:  # weights alone too large (rnnlab.nn.Recurrent)
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


def _prepare(task: Task) -> list[str]:
    """What training needs beyond the splits: the task's own (a transfer set), then the soft
    targets of teachers (``train.teachers``); the lines that say what was prepared."""
    lines = [task.prepare_training()]
    taught = task.cfg.train
    if isinstance(taught, DistillationConfig) and taught.teachers:
        runs = teachers.teacher_runs(taught.teachers)  # a study stands for its runs: name them
        task.splits["train"]["soft"] = teachers.soft_targets(task, runs, taught.distill_temperature)
        lines.append(
            f"taught by {len(runs)} runs (weight {taught.distill_weight}, temperature "
            f"{taught.distill_temperature}): {', '.join(map(str, runs))}"
        )
    return [line for line in lines if line]


def _train(plan: _Run, threads: runtime.Threads) -> Path:
    cfg, world = plan.cfg, plan.world
    seed_everything(cfg.train.seed)
    task = plan.task_cls(cfg, plan.data_dir)
    # --quiet: nothing on the terminal, a first download included.
    with quiet_downloads(plan.quiet):
        task.load()
    sizes = {name: next(iter(split.values())).shape[0] for name, split in task.splits.items()}
    if not all(sizes.values()):
        shown = ", ".join(f"{name} {n}" for name, n in sizes.items())
        raise RnnlabError(
            f"{cfg.task}: a data split is empty ({shown} examples); more data is needed"
        )
    task.to(plan.target)
    for line in _prepare(task):
        plan.console.print(line, soft_wrap=True, markup=False, highlight=False)
    check_fits(task, plan.target)
    seed_everything(cfg.train.seed)  # the model's initial weights do not depend on data loading
    model = task.build_model()
    made = (
        str(plan.out if plan.resume else new_run_dir(cfg.task, plan.out)) if world.is_main else ""
    )
    run_dir = Path(world.broadcast(made))  # rank 0's
    with run_lock(run_dir) if world.is_main else contextlib.nullcontext():
        if world.is_main and not plan.resume:
            write_text(run_dir / "config.toml", cfg.with_absolute_paths().to_toml())
        return _fit_and_write(plan, task, model, run_dir, threads)


def _callbacks(plan: _Run, task: Task, run_dir: Path, threads: runtime.Threads) -> list[Callback]:
    """A run's callbacks, in the order they act after an epoch: the best epoch first (the
    others read it), then the display, the task's and the caller's own, and the checkpoint last
    (it saves what the others did)."""
    cfg = plan.cfg
    found: list[Callback] = [BestEpoch()]
    if plan.world.is_main:
        if not plan.quiet:
            found.append(ProgressDisplay(plan.console))
        found += [*task.callbacks(run_dir), *plan.callbacks, HistoryFile(run_dir / "history.csv")]
    hint = plan.resume_hint or f"rnnlab run {cfg.task} --resume {run_dir}"
    info = {"config": cfg.with_absolute_paths().to_dict(), "threads": threads.count}
    found.append(Checkpointing(run_dir / "last", hint, info))
    return found


def _fit_and_write(
    plan: _Run, task: Task, model: nn.Module, run_dir: Path, threads: runtime.Threads
) -> Path:
    # The task's own config: where the data settles what the config left to it (an epoch budget).
    cfg, world, target = task.cfg, plan.world, plan.target
    trainer = Trainer(
        model,
        cfg.train,
        task.loss,
        lambda m: task.evaluate(m, "val"),
        target,
        callbacks=_callbacks(plan, task, run_dir, threads),
        world=world,
        console=plan.console,
        quiet=plan.quiet,
    )
    on = f"{target} ({threads.describe()})" if target.type == "cpu" else str(target)
    train_examples = len(next(iter(task.splits["train"].values())))  # a transfer set's, if any
    plan.console.print(
        f"[bold]{cfg.task}[/]: {'resuming, ' if plan.resume else ''}"
        f"{parameter_count(model):,} parameters on {escape(on)}"
        f"{f' x {world.size} processes' if world.size > 1 else ''}, {trainer.precision}, "
        f"{train_examples:,} training examples -> {escape(str(run_dir))}",
        soft_wrap=True,  # one line in a log, the run's folder whole
    )
    try:
        result = trainer.fit(task.train_batches(), resume=plan.resume)
    except Diverged as err:
        if not checkpoint.exists(run_dir / "last"):
            raise
        raise Diverged(f"{err}; the last good checkpoint is in {run_dir / 'last'}") from None
    refit = task.refit_epochs(result.best_epoch)
    if refit:
        model = _refit(plan, task, refit)
    if not world.is_main:
        return run_dir
    with world.all_cores():  # the others wait for rank 0 to write: it may use their cores
        model.eval()
        started = time.perf_counter()
        metrics: dict[str, Any] = dict(task.evaluate(model, "test"))
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
            # Whether the training steps were replayed as CUDA graphs (rnnlab.training.graphs).
            cuda_graphs=trainer.graphs is not None
            and trainer.graphs.failure is None
            and trainer.graphs.replays > 0,
            processes=world.size,
            threads=threads.count,
            **({"refit_epochs": refit} if refit else {}),
            rnnlab_version=rnnlab.__version__,
        )
        verdict = task.verdict(metrics)
        if verdict is not None:
            metrics["learned"] = verdict.learned
            if not verdict.learned:
                metrics["not_learned"] = verdict.to_json()
        save_model(run_dir, model, {"task": cfg.task, **task.meta})
        plots.learning_curves(
            result.history, run_dir / "learning_curves.png", cfg.task, result.best_epoch
        )
        # Last: metrics.json marks a finished run, so every other file is whole before it exists.
        write_json(run_dir / "metrics.json", metrics)
    return run_dir


def _refit(plan: _Run, task: Task, epochs: int) -> nn.Module:
    """A fresh model trained for ``epochs`` on the training and validation examples together,
    where validation examples are too few to be worth holding out. Nothing of it is checkpointed:
    a run stopped here finds its first training whole on ``--resume`` and trains this again."""
    train, val = task.splits["train"], task.splits["val"]
    task.splits["train"] = {key: torch.cat([train[key], val[key]]) for key in train}
    examples = len(next(iter(task.splits["train"].values())))
    plan.console.print(
        f"training a fresh model on all {examples:,} training and validation examples for "
        f"{epochs} epochs (train.refit_below)"
    )
    seed_everything(task.cfg.train.seed)
    model = task.build_model()
    shown = plan.world.is_main and not plan.quiet
    trainer = Trainer(
        model,
        dataclasses.replace(task.cfg.train, epochs=epochs, patience=None),
        task.loss,
        lambda m: {},  # no examples are left to validate on
        plan.target,
        callbacks=[ProgressDisplay(plan.console)] if shown else [],
        world=plan.world,
        console=plan.console,
        quiet=plan.quiet,
    )
    trainer.fit(task.train_batches())
    return model


def evaluate_run(
    run_dir: Path, device: str = "auto", data_dir: Path | None = None
) -> dict[str, float]:
    """Recompute a run's test metrics from its saved model and its configuration's data."""
    task, model = restore(task_of(run_dir), run_dir, device)
    task.data_dir = data_dir
    task.load()
    task.to(task.device)
    return task.evaluate(model, "test")
