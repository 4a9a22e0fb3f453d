"""Studies of several runs: RNN vs LSTM vs GRU on one task, a few seeds each.

:func:`run_series` trains independent runs one after another under one progress display (the lab
report uses it too); :func:`compare` plans one run per cell and seed through the task's own config
and :func:`rnnlab.tasks.run`, then summarises them: ``compare.csv`` (one row per run),
``compare.md`` (mean ± standard deviation of every metric per cell, and the test metrics of
each cell's seeds, and of all the runs, averaged into one model where the task allows it) and
``curves.png``.

A study writes its plan (``plan.json``: every run's directory and resolved config) before the
first run starts, so ``--resume`` continues it after Ctrl-C or a crash: finished runs are kept,
an interrupted one continues from its checkpoint, the rest start.
"""

from __future__ import annotations

import csv
import json
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TaskID

from rnnlab import plots
from rnnlab.config import Config, Override, override_text
from rnnlab.display import progress_bars
from rnnlab.errors import RnnlabError
from rnnlab.files import read_json, write_csv, write_json, write_text
from rnnlab.nn import CELLS
from rnnlab.runs.ensemble import evaluate_ensemble
from rnnlab.runs.pipeline import run
from rnnlab.runs.rundir import LOCK, new_run_dir
from rnnlab.tasks import Task, get_task
from rnnlab.training import checkpoint
from rnnlab.training.callbacks import Callback, EpochEnd
from rnnlab.training.device import resolve_device
from rnnlab.training.distributed import World, is_main_process
from rnnlab.training.trainer import Trainer


@dataclass
class Planned:
    """One run of a series: a label for the display, the task, its config, its run directory."""

    label: str
    task: type[Task]
    cfg: Config
    out: Path


def parse_cells(text: str | None) -> list[str]:
    """``"rnn,lstm,gru"`` -> the cell names, checked against the registry (None: every cell);
    an unknown one names ``--cells``."""
    if text is None:
        return list(CELLS)
    cells = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in cells if c not in CELLS]
    if unknown or not cells:
        raise RnnlabError(
            f"--cells {text!r}: expected a comma-separated list of {', '.join(CELLS)}"
        )
    return list(dict.fromkeys(cells))  # a cell named twice runs once


PLAN = "plan.json"


def save_plan(folder: Path, planned: Sequence[Planned], study: dict[str, Any]) -> None:
    """Write ``plan.json``: what the study is (``study``, with its ``command``) and every run."""
    runs = [
        {
            "label": p.label,
            "task": p.task.name,
            "dir": p.out.relative_to(folder).as_posix(),
            "config": p.cfg.with_absolute_paths().to_toml(),
        }
        for p in planned
    ]
    write_json(folder / PLAN, {"study": study, "runs": runs})


def load_plan(folder: Path, command: str) -> tuple[list[Planned], dict[str, Any]]:
    """The runs and description saved by :func:`save_plan` in a study of ``rnnlab COMMAND``."""
    data = read_json(folder / PLAN, f"study directory of `rnnlab {command}`")
    try:
        study, runs = data["study"], data["runs"]
        if study["command"] != command:
            raise RnnlabError(
                f"--resume {folder}: a study of `rnnlab {study['command']}`, "
                f"not of `rnnlab {command}`"
            )
        if not isinstance(runs, list) or not runs:
            raise RnnlabError(f"{folder / PLAN}: no runs in the plan")
        planned = []
        with tempfile.TemporaryDirectory() as tmp:
            for k, entry in enumerate(runs):
                if (folder / entry["dir"]).resolve().parent != folder.resolve():
                    raise RnnlabError(
                        f"{folder / PLAN}: run directory {entry['dir']!r} is not a folder of the study"
                    )
                task = get_task(entry["task"])
                path = Path(tmp) / f"{k}.toml"
                path.write_text(entry["config"], encoding="utf-8")
                try:
                    cfg = task.config(path)
                except RnnlabError as error:
                    message = str(error).replace(f"{path}: ", "")
                    raise RnnlabError(
                        f"{folder / PLAN}: run {entry['label']!r}: {message}"
                    ) from None
                planned.append(Planned(entry["label"], task, cfg, folder / entry["dir"]))
    except (KeyError, TypeError) as error:
        raise RnnlabError(f"{folder / PLAN}: not a plan written by rnnlab ({error!r})") from None
    return planned, study


def _prepare(plan: Planned) -> bool | None:
    """Where a planned run stands: None if it finished, True if it resumes from a checkpoint,
    False if it starts (a directory holding only the config of a run stopped in its first epoch
    is cleared; anything else there is refused, not overwritten)."""
    if (plan.out / "metrics.json").exists():
        return None
    if checkpoint.exists(plan.out / "last"):
        return True
    if plan.out.is_dir():
        found = {p.name for p in plan.out.iterdir()}
        if found - {"config.toml", LOCK}:
            raise RnnlabError(
                f"{plan.out}: holds files but neither metrics.json nor a checkpoint; "
                "remove it to train that run again"
            )
        (plan.out / "config.toml").unlink(missing_ok=True)
        (plan.out / LOCK).unlink(missing_ok=True)
    return False


def run_series(
    planned: Sequence[Planned],
    device: str = "auto",
    data_dir: Path | None = None,
    quiet: bool = False,
    resume_hint: str | None = None,
) -> list[Path]:
    """Train every planned run in turn; one bar counts the epochs of all of them.

    Runs share nothing (each loads its data and seeds itself), so one after another is the whole
    schedule. A run that already finished is kept as it is and one with a checkpoint continues
    from it (``resume_hint``: the command that does so for the whole series). Under
    ``--procs``/torchrun every process walks the same series (each run is data-parallel) and only
    rank 0 shows it.
    """
    console = Console(stderr=True, quiet=quiet or not is_main_process())
    # A line per finished run stays; the bar goes.
    progress = progress_bars(console, info="epochs  {task.fields[info]}", disable=quiet)
    # Every run's state is read before any trains: under torchrun all processes see the same.
    states = [_prepare(plan) for plan in planned]
    done, run_dirs = 0, []
    with progress:
        bar = progress.add_task("", total=sum(p.cfg.train.epochs for p in planned), info="")
        for i, (plan, resume) in enumerate(zip(planned, states, strict=True)):
            progress.update(bar, description=escape(f"run {i + 1}/{len(planned)} {plan.label}"))
            if resume is not None:
                advance = _advancer(progress, bar, done, plan.cfg)
                run(
                    plan.task,
                    plan.cfg,
                    plan.out,
                    device,
                    quiet=True,
                    data_dir=data_dir,
                    extra_callbacks=(advance,),
                    console=Console(quiet=True),
                    resume=resume,
                    resume_hint=resume_hint,
                )
            # Early stopping ends a run short of its epochs: the bar skips the rest.
            done += plan.cfg.train.epochs
            progress.update(bar, completed=done)
            metrics = json.loads((plan.out / "metrics.json").read_text())
            progress.console.print(
                f"{plan.label}: {_monitored(plan.cfg, metrics)}, "
                f"{metrics['train_seconds']:.1f} s of training -> {plan.out}"
                + (" (finished before)" if resume is None else ""),
                markup=False,  # a folder's name is printed as it is
                soft_wrap=True,  # one line even in a log file (rich folds at 80 columns there)
            )
            run_dirs.append(plan.out)
    return run_dirs


def _advancer(progress: Progress, bar: TaskID, start: int, cfg: Config) -> Callback:
    """A training callback that moves the series' bar to this run's epoch."""
    monitor, epochs = cfg.train.monitor, cfg.train.epochs

    def advance(trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        progress.update(
            bar,
            completed=start + epoch,
            info=f"(this run {epoch}/{epochs})  {monitor} {row[monitor]:.4f}",
        )

    return EpochEnd(advance)


def _monitored(cfg: Config, metrics: dict[str, Any]) -> str:
    # The test-set twin of the monitored metric (val_accuracy -> test_accuracy), else the monitor.
    key = "test_" + cfg.train.monitor.removeprefix("val_")
    key = key if key in metrics else cfg.train.monitor
    return f"{key} {metrics[key]:.4f}" if key in metrics else "done"


def compare(
    task_name: str,
    cells: Sequence[str],
    seeds: int,
    overrides: Sequence[Override] = (),
    config: Path | None = None,
    out: Path | None = None,
    device: str = "auto",
    data_dir: Path | None = None,
    quiet: bool = False,
) -> tuple[Path, dict[str, dict[str, str]]]:
    """Train ``task_name`` with every cell and ``seeds`` seeds; write the study.

    Seeds count up from the config's ``train.seed``. Every config is built (and checked) before
    the first run starts, so a bad ``--set`` fails in a second, not after an hour of training.
    Under ``--procs``/torchrun every process trains every run with the others and rank 0
    writes. Returns the study's folder and its summary (:func:`summarise`).
    """
    if seeds < 1:
        raise RnnlabError(f"--seeds must be >= 1, got {seeds}")
    task_cls = get_task(task_name)
    base_seed = task_cls.config(config, overrides).train.seed
    seeds_used = range(base_seed, base_seed + seeds)
    configs = {
        (cell, seed): task_cls.config(
            config, [*overrides, f"model.cell='{cell}'", f"train.seed={seed}"]
        )
        for cell in cells
        for seed in seeds_used
    }
    world, _ = World.from_env(resolve_device(device))
    out = Path(
        world.broadcast(str(new_run_dir(f"compare/{task_name}", out)) if world.is_main else "")
    )
    planned = [
        Planned(f"{cell} seed {seed}", task_cls, cfg, out / f"{cell}-seed{seed}")
        for (cell, seed), cfg in configs.items()
    ]
    command = " ".join(
        [f"rnnlab compare {task_name} --cells {','.join(cells)} --seeds {seeds}"]
        + ([f"--config {config}"] if config else [])
        + [f"--set {override_text(s)}" for s in overrides]
        + ([f"--procs {world.size}"] if world.size > 1 else [])
    )
    study: dict[str, Any] = {"command": "compare", "task": task_name, "cells": list(cells)}
    study |= {"seeds": list(seeds_used), "line": command}
    if world.is_main:
        save_plan(out, planned, study)
    return out, _study(out, planned, study, device, data_dir, quiet, world)


def resume_compare(
    folder: Path,
    task_name: str,
    device: str = "auto",
    data_dir: Path | None = None,
    quiet: bool = False,
) -> tuple[Path, dict[str, dict[str, str]], dict[str, Any]]:
    """Continue the study of ``task_name`` in ``folder`` (written by :func:`compare`); returns
    it, its summary and what it is (``task``, ``cells``, ``seeds``)."""
    planned, study = load_plan(folder, "compare")
    if study["task"] != task_name:
        raise RnnlabError(f"--resume {folder}: a study of {study['task']}, not of {task_name}")
    world, _ = World.from_env(resolve_device(device))
    return folder, _study(folder, planned, study, device, data_dir, quiet, world), study


def _study(
    out: Path,
    planned: Sequence[Planned],
    study: dict[str, Any],
    device: str,
    data_dir: Path | None,
    quiet: bool,
    world: World,
) -> dict[str, dict[str, str]]:
    """Train (or finish) the study's runs, then write its summary; returns the summary."""
    task_name, cells = study["task"], study["cells"]
    hint = f"rnnlab compare {task_name} --resume {out}"
    run_dirs = run_series(planned, device, data_dir, quiet, resume_hint=hint)
    rows: list[dict[str, Any]] = []
    histories: dict[str, list[list[dict[str, float]]]] = {cell: [] for cell in cells}
    for plan, run_dir in zip(planned, run_dirs, strict=True):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        cell = plan.cfg.model.cell
        rows.append({"cell": cell, "seed": plan.cfg.train.seed, "run_dir": run_dir.name, **metrics})
        with open(run_dir / "history.csv", newline="") as f:
            histories[cell].append([{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)])
    table = summarise(cells, rows)
    if not world.is_main:
        return table
    if planned[0].task.combine is not None:
        table |= ensembles(cells, planned, run_dirs, device, data_dir)
    write_csv(out / "compare.csv", rows)
    markdown = summary_markdown(task_name, cells, table, study["seeds"], study["line"])
    write_text(out / "compare.md", markdown)
    plots.compare_curves(histories, out / "curves.png", title=task_name)
    return table


def ensembles(
    cells: Sequence[str],
    planned: Sequence[Planned],
    run_dirs: Sequence[Path],
    device: str,
    data_dir: Path | None,
) -> dict[str, dict[str, str]]:
    """``{"ensemble test_…": {column: value}}``: each cell's seeds averaged into one model (with
    several seeds), and every run of the study averaged into one (column ``all``, with several
    cells: different cells make different mistakes, so theirs is usually the better average)."""
    groups: dict[str, list[Path]] = {}
    if len(run_dirs) > len(cells):
        cell_of = [p.cfg.model.cell for p in planned]
        groups = {c: [d for k, d in zip(cell_of, run_dirs, strict=True) if k == c] for c in cells}
    if len(cells) > 1:
        groups["all"] = list(run_dirs)
    table: dict[str, dict[str, str]] = {}
    for column, dirs in groups.items():
        _, metrics = evaluate_ensemble(dirs, device, data_dir)
        for key, value in metrics.items():
            if key.startswith("test_"):
                table.setdefault(f"ensemble {key}", {})[column] = _number(value, 4)
    return table


def columns(cells: Sequence[str], table: dict[str, dict[str, str]]) -> list[str]:
    """The summary's columns: the cells, then ``all`` if the study's ensemble is in it."""
    return [*cells, *(["all"] if any("all" in row for row in table.values()) else [])]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the deviation of one value is 0."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def _number(x: float, digits: int) -> str:
    # Significant digits, but whole numbers once they are that long (parameters, seconds).
    return f"{x:,.0f}" if abs(x) >= 10**digits else f"{x:.{digits}g}"


def summarise(cells: Sequence[str], rows: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """``{metric: {cell: "mean ± std"}}`` over every numeric key of the runs' ``metrics.json``
    (the value alone where every run has the same)."""
    skip = {"seed"}
    keys = [
        k
        for k, v in rows[0].items()
        if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)
    ]
    table: dict[str, dict[str, str]] = {}
    for key in keys:
        table[key] = {}
        for cell in cells:
            values = [float(r[key]) for r in rows if r["cell"] == cell and key in r]
            mean, std = mean_std(values)
            # A value every seed shares (epochs, parameters, a baseline), or a single seed's,
            # has no spread to show: no "± 0".
            same = len(set(values)) == 1
            table[key][cell] = (
                _number(mean, 4) if same else f"{_number(mean, 4)} ± {_number(std, 2)}"
            )
    return table


def summary_markdown(
    task_name: str,
    cells: Sequence[str],
    table: dict[str, dict[str, str]],
    seeds: Sequence[int],
    command: str,
) -> str:
    """``compare.md``: what was run, then one row per metric and one column per cell."""
    shown = columns(cells, table)
    lines = [
        f"# {task_name}: {' vs '.join(cells)}",
        "",
        f"`{command}`",
        "",
        f"Mean ± sample standard deviation over seeds {', '.join(map(str, seeds))} "
        "(the task's settings otherwise); every run is a row of `compare.csv`."
        + (
            " Rows `ensemble …`: the test metrics of each cell's runs averaged into one model,"
            " and of all the runs (column `all`), as `rnnlab eval` of their run directories."
            if any(key.startswith("ensemble ") for key in table)
            else ""
        ),
        "",
        "| metric | " + " | ".join(shown) + " |",
        "|---|" + "---|" * len(shown),
    ]
    for key, by_cell in table.items():
        lines.append(f"| {key} | " + " | ".join(by_cell.get(c, "") for c in shown) + " |")
    lines += ["", "![validation curves, mean and ± one standard deviation](curves.png)", ""]
    return "\n".join(lines)
