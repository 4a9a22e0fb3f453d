"""Several trained runs as one model: the mean of their class probabilities, or of their values.

Runs that differ only by their seed make different errors; averaging them cancels part of those
errors, the cheapest gain in accuracy there is (InceptionTime, a strong time-series classifier,
is five networks averaged). :func:`evaluate_ensemble` scores every run and their ensemble on the
test set they share; ``rnnlab eval RUN_DIR RUN_DIR…`` prints it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError
from rnnlab.runs.restore import restore, task_of
from rnnlab.runs.rundir import check_distinct
from rnnlab.tasks.base import Task

Combine = Literal["probabilities", "mean"]


class Ensemble(nn.Module):
    """Call every member with the same inputs and combine their outputs.

    ``combine="probabilities"``: members give class logits; the ensemble gives the log of their
    mean probability, so its argmax is the averaged vote and cross-entropy on it is the
    ensemble's own loss. ``combine="mean"``: members give values (regression); the ensemble gives
    their mean.
    """

    def __init__(self, members: Sequence[nn.Module], combine: Combine) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if combine not in ("probabilities", "mean"):
            raise ValueError(f"combine must be 'probabilities' or 'mean', got {combine!r}")
        self.members, self.combine = nn.ModuleList(members), combine

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        outputs = torch.stack([m(*args, **kwargs).float() for m in self.members])  # (K, B, ...)
        if self.combine == "mean":
            return outputs.mean(0)
        # log(mean_k p_k) = logsumexp_k(log p_k) - log K, stable for any logits
        return torch.logsumexp(outputs.log_softmax(-1), dim=0) - math.log(len(self.members))


def evaluate_ensemble(
    run_dirs: Sequence[Path], device: str = "auto", data_dir: Path | None = None
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Test metrics of every run and of their ensemble.

    The runs must be of one task that classifies or regresses (``Task.combine``) and must have
    been tested on the very same data: their configs may differ in model and training, not in
    what the test set holds.
    """
    check_distinct(run_dirs, "ensemble")
    first = run_dirs[0]
    task_cls = task_of(first)
    if task_cls.combine is None:
        raise RnnlabError(
            f"{first}: task {task_cls.name!r} cannot be ensembled; ensembles average "
            "classifiers (electric-devices, sentiment) or regressions (air-quality)"
        )
    restored: list[tuple[Task, nn.Module]] = []
    for run_dir in run_dirs:
        other = task_of(run_dir)
        if other is not task_cls:
            raise RnnlabError(
                f"{run_dir}: a run of task {other.name!r}, {first} one of "
                f"{task_cls.name!r}; an ensemble's runs must share their task"
            )
        task, model = restore(task_cls, run_dir, device)
        task.data_dir = data_dir
        task.load()
        task.to(task.device)
        if restored and not _same_split(restored[0][0].splits["test"], task.splits["test"]):
            raise RnnlabError(
                f"{run_dir}: its test set differs from that of {first} (another [data] config, "
                "or a split seeded by another train.seed); an ensemble's runs must share it"
            )
        restored.append((task, model))
    members = [task.evaluate(model, "test") for task, model in restored]
    task = restored[0][0]
    ensemble = Ensemble([model for _, model in restored], task_cls.combine).eval()
    return members, task.evaluate(ensemble, "test")


def _same_split(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a
    )
