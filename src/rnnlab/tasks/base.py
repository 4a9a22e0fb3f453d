"""The task contract: what every lab task fills in, the four steps of its story.

A task is a story in four steps (data -> model -> training -> what it learned). Subclasses fill in
:meth:`Task.load`, :meth:`Task.build_model`, :meth:`Task.loss` and :meth:`Task.evaluate`;
:func:`rnnlab.runs.pipeline.run` wires them to the trainer and writes the run directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.config import Config, Override, load_config
from rnnlab.errors import RnnlabError
from rnnlab.nn import RecurrentConfig
from rnnlab.training.batches import Batch, Batches, TensorBatches
from rnnlab.training.callbacks import Callback
from rnnlab.training.config import TrainConfig

Split = dict[str, Tensor]


@dataclass
class Verdict:
    """Whether a run learned: its test score set against the trivial baseline the run computes
    (the majority class, persistence, character frequencies), and, where it did not, the likely
    causes and the options to try."""

    metric: str
    score: float
    baseline: str
    baseline_score: float
    learned: bool
    causes: list[str] = field(default_factory=list)
    tries: list[str] = field(default_factory=list)

    def message(self) -> str:
        """The one line a run ends with when it did not learn."""
        return (
            f"did not learn: {self.metric} {self.score:.4g} is not clearly better than "
            f"{self.baseline}'s {self.baseline_score:.4g}"
        )

    def to_json(self) -> dict[str, Any]:
        """``metrics.json``'s ``not_learned`` entry."""
        return {"message": self.message(), "causes": self.causes, "try": self.tries}


class Task:
    """One lab task. Class attributes name it and its config sections; instances hold its data.

    After :meth:`load`, ``splits`` maps ``"train"``, ``"val"``, ``"test"`` to dicts of tensors with a
    shared first dimension, and ``meta`` holds everything JSON-able a saved model needs to be
    rebuilt without the data (sizes, vocabularies, scalers, class names).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    Data: ClassVar[type]
    Model: ClassVar[type] = RecurrentConfig
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
    def config(cls, path: Path | None = None, overrides: Sequence[Override] = ()) -> Config:
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
        """Extensions of the training loop for this task (samples after every epoch...)."""
        return ()

    def report(self, run_dir: Path, model: nn.Module) -> dict[str, Any]:
        """Task-specific files (plots, report.json) after training; returns extra metrics."""
        return {}

    def predict_array(self, model: nn.Module, array: np.ndarray) -> list[dict[str, Any]]:
        """Answers to inputs given as an array (series or readings) rather than files."""
        raise RnnlabError(
            f"task {self.name!r} answers texts or questions, not arrays: give a list of strings"
        )

    def refit_epochs(self, best_epoch: int) -> int:
        """After training: for how many epochs a fresh model trains again on the training and
        validation examples together (0: not at all; the best epoch's model is kept)."""
        return 0

    def verdict(self, metrics: dict[str, Any]) -> Verdict | None:
        """Whether the test ``metrics`` are clearly better than the task's trivial baseline
        (None: the task computes none)."""
        return None

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

    def outputs(
        self,
        model: nn.Module,
        split: str | Batch,
        fn: Callable[[nn.Module, Batch], Tensor] | None = None,
    ) -> Tensor:
        """Run ``fn(model, batch)`` (default: ``model(**inputs)``) in eval batches over a split,
        named or given as its tensors (new inputs to predict)."""
        fn = fn or (lambda m, b: m(b["x"], b.get("lengths")))
        tensors = self.splits[split] if isinstance(split, str) else split
        batches = TensorBatches(tensors, self.cfg.train.eval_batch_size, shuffle=False).epoch()
        with torch.inference_mode():
            return torch.cat([fn(model, batch).float() for batch in batches])
