"""A trained run read back: its task, its config and its model, from the run directory alone."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from rnnlab.errors import RnnlabError
from rnnlab.runs.rundir import ModelMeta, load_model_meta, load_weights
from rnnlab.schema import read_entries
from rnnlab.tasks import get_task
from rnnlab.tasks.base import Task
from rnnlab.training.device import resolve_device


def task_of(run_dir: Path) -> type[Task]:
    """The task class a run directory was trained for (from its ``model.json``)."""
    return get_task(str(load_model_meta(run_dir)["task"]))


def restore(task_cls: type[Task], run_dir: Path, device: str = "auto") -> tuple[Task, nn.Module]:
    """Rebuild a trained task's model from its run directory (no data needed).

    ``model.json`` is checked against the task's schema (``Task.Meta``) and the weights must be
    finite: a damaged file is a one-line error naming it and its entry.
    """
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
