"""Knowledge distillation's training side: the student's loss and its teachers' settings.

An ensemble of runs beats each of its members (:mod:`rnnlab.runs.ensemble`) but costs all of them
at every prediction. Distillation (Hinton et al. 2015) trains a single *student* on the ensemble's
class probabilities (its *soft targets*) as well as on the true labels:

    loss = (1 - w) * CE(z, y) + w * T² * CE(softmax(z / T), softmax(log p / T))

with ``z`` the student's logits, ``p`` the teachers' mean probability, ``w`` the soft targets'
weight (``train.distill_weight``) and ``T`` the temperature (``train.distill_temperature``).
Above 1, the temperature lifts the runner-up classes out of the teachers' confidence: which
classes the teachers find alike is what the student learns from them that labels do not say. The
factor T² keeps the soft term's gradients on the scale of the hard term's. The teachers' soft
targets come from :mod:`rnnlab.runs.teachers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor

from rnnlab.config import check_positive, check_probability
from rnnlab.training.config import TrainConfig


@dataclass
class DistillationConfig(TrainConfig):
    """``[train]`` of a task that can learn from teachers: the runs to distil and how."""

    teachers: list[str] = field(default_factory=list)  # runs (or studies of runs) to distil
    distill_weight: float = 0.9
    distill_temperature: float = 4.0

    def check(self) -> None:
        super().check()
        check_probability("train.distill_weight", self.distill_weight)
        check_positive("train.distill_temperature", self.distill_temperature)


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
