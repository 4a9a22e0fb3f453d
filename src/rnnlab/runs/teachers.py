"""Teachers for distillation: the runs ``train.teachers`` names, and their soft targets on a
student's training data (the loss is :mod:`rnnlab.training.distillation`'s).

The teachers are run directories of the same task, trained on the same ``[data]`` config; a
directory of ``rnnlab compare`` stands for all of its runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from rnnlab.errors import RnnlabError
from rnnlab.runs.ensemble import Ensemble
from rnnlab.runs.restore import restore
from rnnlab.runs.rundir import check_distinct
from rnnlab.tasks.base import Task
from rnnlab.training.distillation import soften


def teacher_runs(paths: Sequence[str]) -> list[Path]:
    """The run directories ``paths`` name: each a run, or a study holding runs (``rnnlab compare``)."""
    runs = []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            raise RnnlabError(f"config key train.teachers: {path} is not a directory")
        if (path / "model.json").is_file():
            runs.append(path)
            continue
        inner = sorted(p.parent for p in path.glob("*/model.json"))
        if not inner:
            raise RnnlabError(
                f"config key train.teachers: {path} holds no trained run (no model.json in it "
                "or in its subdirectories)"
            )
        runs += inner
    check_distinct(runs, "config key train.teachers")
    return runs


def soft_targets(task: Task, runs: Sequence[Path], temperature: float) -> Tensor:
    """The mean class probabilities of ``runs`` (from :func:`teacher_runs`) on ``task``'s training
    split, softened by ``temperature``.

    ``task`` is loaded and on its device. Every teacher must be a run of the same task trained on
    the same ``[data]`` config, so that its inputs and classes mean what the student's do.
    """
    members = []
    for run_dir in runs:
        try:  # restore refuses a run of another task, or one without its files
            teacher, model = restore(type(task), run_dir, str(task.device))
        except RnnlabError as error:
            raise RnnlabError(f"config key train.teachers: {error}") from None
        if teacher.cfg.data != task.cfg.data:
            ours, theirs = vars(task.cfg.data), vars(teacher.cfg.data)
            key = next(k for k in ours if ours[k] != theirs.get(k))
            raise RnnlabError(
                f"config key train.teachers: {run_dir} was trained with data.{key}="
                f"{theirs.get(key)!r}, this run has {ours[key]!r}; teachers must read the same data"
            )
        members.append(model)
    return soften(task.outputs(Ensemble(members, "probabilities").eval(), "train"), temperature)
