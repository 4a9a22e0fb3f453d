"""The classification recipe the classifying tasks share: cross-entropy (or a teachers' soft
targets), accuracy and macro-F1, a confusion matrix, per-class scores, the majority baseline, and a
stratified validation hold-out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab import plots
from rnnlab.config import check_probability
from rnnlab.files import write_json
from rnnlab.nn import ManyToOneConfig
from rnnlab.tasks.base import Task, Verdict
from rnnlab.tasks.metrics import classification, clearly_above, majority_baseline
from rnnlab.training import distillation
from rnnlab.training.batches import Batch
from rnnlab.training.distillation import DistillationConfig


@dataclass
class ClassifierTrain(DistillationConfig):
    """``[train]`` of a classifier: accuracy monitored, teachers (``train.teachers``) if any."""

    monitor: str = "val_accuracy"
    # Each label's target spreads this much probability evenly over all classes (Szegedy et al.
    # 2016): the model is not pushed to certainty on training examples.
    label_smoothing: float = 0.0

    def check(self) -> None:
        super().check()
        check_probability("train.label_smoothing", self.label_smoothing)


def stratified_holdout(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (keep, held_out): ``fraction`` of every class held out, chosen with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in labels.unique():
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=g)]
        held.append(members[: round(len(members) * fraction)])
    held_out = torch.cat(held).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held_out] = False
    return keep.nonzero().squeeze(1), held_out


class Classifier(Task):
    """Shared by the classification tasks: cross-entropy, accuracy, macro-F1, confusion matrix."""

    Model = ManyToOneConfig
    combine = "probabilities"

    def loss(self, model: nn.Module, batch: Batch, state: Any) -> tuple[Tensor, Any]:
        logits = model(batch["x"], batch.get("lengths")).float()  # the loss in fp32 under autocast
        t = self.cfg.train
        if "soft" in batch:  # a student of teachers' runs
            taught = distillation.loss(
                logits,
                batch["y"],
                batch["soft"],
                t.distill_weight,
                t.distill_temperature,
                t.label_smoothing,
            )
            return taught, None
        return F.cross_entropy(logits, batch["y"], label_smoothing=t.label_smoothing), None

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        logits = self.outputs(model, split)
        y = self.splits[split]["y"]
        scores, _ = classification(y, logits.argmax(-1), self.meta["classes"])
        scores["loss"] = float(F.cross_entropy(logits.float(), y))
        return {f"{split}_{k}": v for k, v in scores.items()}

    # What to say when a classifier did not learn (a task adds its own).
    causes: ClassVar[tuple[str, ...]] = (
        "a learning rate too high (the loss jumps) or too low (it barely moves)",
        "too few epochs for the data, or a model too large for so few examples",
        "inputs on scales far apart (normalise them)",
    )
    tries: ClassVar[tuple[str, ...]] = (
        "--set train.lr=1e-3 (or 1e-2)",
        "--set train.epochs=N with a larger N",
        "--set model.hidden=32",
    )

    def verdict(self, metrics: dict[str, Any]) -> Verdict | None:
        """Test accuracy against always answering the most frequent training class."""
        accuracy, majority = metrics["test_accuracy"], metrics["majority_accuracy"]
        n = len(self.splits["test"]["y"])
        learned = clearly_above(accuracy, majority, n)
        return Verdict(
            "test accuracy", accuracy, "the majority class", majority, learned,
            [] if learned else list(self.causes), [] if learned else list(self.tries),
        )  # fmt: skip

    def answers(self, model: nn.Module, inputs: Batch) -> list[dict[str, Any]]:
        """New inputs -> per example the likeliest class and every class's probability."""
        classes = self.meta["classes"]
        probs = self.outputs(model, inputs).softmax(-1)
        return [
            {"label": classes[best]} | dict(zip(classes, p, strict=True))
            for best, p in zip(probs.argmax(-1).tolist(), probs.tolist(), strict=True)
        ]

    def report(self, run_dir: Path, model: nn.Module) -> dict[str, Any]:
        y = self.splits["test"]["y"]
        _, report = classification(y, self.outputs(model, "test").argmax(-1), self.meta["classes"])
        write_json(run_dir / "report.json", report)
        plots.confusion(
            report["confusion_matrix"], self.meta["classes"], run_dir / "confusion.png", self.name
        )
        return {"majority_accuracy": majority_baseline(self.splits["train"]["y"].cpu(), y.cpu())}
