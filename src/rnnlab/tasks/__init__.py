"""The lab's tasks, by name. Each is a short recipe over the shared data, model and trainer."""

from __future__ import annotations

import difflib
from pathlib import Path

from rnnlab.errors import RnnlabError
from rnnlab.rundir import load_model_meta
from rnnlab.tasks.addition import Addition
from rnnlab.tasks.air_quality import AirQuality
from rnnlab.tasks.base import Task, restore, run
from rnnlab.tasks.electric_devices import ElectricDevices
from rnnlab.tasks.sentiment import Sentiment
from rnnlab.tasks.seq2seq import Pairs
from rnnlab.tasks.text_generation import TextGeneration

TASKS: dict[str, type[Task]] = {
    t.name: t for t in (AirQuality, ElectricDevices, Sentiment, TextGeneration, Addition, Pairs)
}


def get_task(name: str) -> type[Task]:
    """The task class called ``name``; an unknown name is an error that suggests the closest."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RnnlabError(f"unknown task {name!r}: {hint}tasks: {', '.join(TASKS)}")
    return TASKS[name]


def task_of(run_dir: Path) -> type[Task]:
    """The task class a run directory was trained for (from its ``model.json``)."""
    return get_task(str(load_model_meta(run_dir)["task"]))


def evaluate_run(
    run_dir: Path, device: str = "auto", data_dir: Path | None = None
) -> dict[str, float]:
    """Recompute a run's test metrics from its saved model and its configuration's data."""
    task, model = restore(task_of(run_dir), run_dir, device)
    task.data_dir = data_dir
    task.load()
    task.to(task.device)
    return task.evaluate(model, "test")


__all__ = ["TASKS", "Task", "evaluate_run", "get_task", "restore", "run", "task_of"]
