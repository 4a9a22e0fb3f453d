"""Knowledge distillation: one model trained to answer like an ensemble of runs (Hinton et al. 2015).

An ensemble of runs beats each of its members (:mod:`rnnlab.ensemble`) but costs all of them at
every prediction. Distillation trains a single *student* on the ensemble's class probabilities
(its *soft targets*) as well as on the true labels:

    loss = (1 - w) * CE(z, y) + w * T² * CE(softmax(z / T), softmax(log p / T))

with ``z`` the student's logits, ``p`` the teachers' mean probability, ``w`` the soft targets'
weight (``train.distill_weight``) and ``T`` the temperature (``train.distill_temperature``).
Above 1, the temperature lifts the runner-up classes out of the teachers' confidence: which
classes the teachers find alike is what the student learns from them that labels do not say. The
factor T² keeps the soft term's gradients on the scale of the hard term's.

The teachers are run directories of the same task, trained on the same ``[data]`` config; a
directory of ``rnnlab compare`` stands for all of its runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from rnnlab.errors import RnnlabError
from rnnlab.rundir import check_distinct

if TYPE_CHECKING:
    from rnnlab.tasks.base import Task


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
    from rnnlab.ensemble import Ensemble  # both import the tasks, which import this module
    from rnnlab.tasks import restore

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


def soften(log_p: Tensor, temperature: float) -> Tensor:
    """Soft targets ``softmax(log p / T)`` from class log-probabilities ``log_p``."""
    return (log_p / temperature).softmax(-1)


def loss(
    logits: Tensor,
    labels: Tensor,
    soft: Tensor,
    weight: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> Tensor:
    """The student's loss: cross-entropy on ``labels`` (smoothed by ``label_smoothing``) and,
    weighted ``weight``, on ``soft``."""
    hard = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    taught = F.cross_entropy(logits / temperature, soft) * temperature**2
    return (1.0 - weight) * hard + weight * taught
