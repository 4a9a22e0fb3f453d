"""Lab task 2: which kind of device drew this day of electricity? (7 classes, many-to-one).

Data: the UCR ElectricDevices series, 96 readings a day (or any UCR ``_TRAIN``/``_TEST`` pair).
Model: a stack of LSTMs over the readings; a linear layer maps the last state to class logits.
What it learned: accuracy and macro-F1 on the test days, a confusion matrix, per-class scores.
``rnnlab predict RUN_DIR FILE`` classifies the days of a file in the UCR format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab import data, distill, plots
from rnnlab.config import (
    ManyToOneModel,
    TrainConfig,
    check_positive,
    check_probability,
    check_share,
)
from rnnlab.errors import RnnlabError
from rnnlab.metrics import classification, majority_baseline
from rnnlab.models import ManyToOne
from rnnlab.rundir import write_json
from rnnlab.tasks.base import Task
from rnnlab.train import Batch


@dataclass
class UCRData:
    """A UCR pair (default: ElectricDevices from the registry) and the validation hold-out."""

    train: str | None = None
    test: str | None = None
    znorm: bool = False
    differences: bool = False  # each step's change as an input feature
    sorted_levels: bool = False  # the day's readings, lowest to highest, as an input feature
    val_fraction: float = 0.1

    def check(self) -> None:
        if (self.train is None) != (self.test is None):
            raise RnnlabError(
                "config keys data.train and data.test go together: give both or neither"
            )
        check_share("data.val_fraction", self.val_fraction)


@dataclass
class ClassifierTrain(TrainConfig):
    monitor: str = "val_accuracy"
    teachers: list[str] = field(default_factory=list)  # runs to distil (rnnlab.distill)
    distill_weight: float = 0.9
    distill_temperature: float = 4.0
    # Each label's target spreads this much probability evenly over all classes (Szegedy et al.
    # 2016): the model is not pushed to certainty on training examples.
    label_smoothing: float = 0.0

    def check(self) -> None:
        super().check()
        check_probability("train.distill_weight", self.distill_weight)
        check_probability("train.label_smoothing", self.label_smoothing)
        check_positive("train.distill_temperature", self.distill_temperature)


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

    Model = ManyToOneModel
    combine = "probabilities"

    def prepare_training(self) -> str | None:
        t = self.cfg.train
        if not t.teachers:
            return None
        runs = distill.teacher_runs(t.teachers)  # a study stands for its runs: name them
        self.splits["train"]["soft"] = distill.soft_targets(self, runs, t.distill_temperature)
        return (
            f"taught by {len(runs)} runs (weight {t.distill_weight}, temperature "
            f"{t.distill_temperature}): {', '.join(map(str, runs))}"
        )

    def loss(self, model: nn.Module, batch: Batch, state: Any) -> tuple[Tensor, Any]:
        logits = model(batch["x"], batch.get("lengths")).float()  # the loss in fp32 under autocast
        t = self.cfg.train
        if "soft" in batch:  # a student of teachers' runs
            taught = distill.loss(
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


class _UCRMetaRequired(TypedDict):
    features: int
    classes: list[str]


class UCRMeta(_UCRMetaRequired, total=False):
    """``model.json`` of a UCR classifier: features per step, class names, series length."""

    length: int


class ElectricDevices(Classifier):
    name = "electric-devices"
    summary = "ElectricDevices day classification (UCR, 7 classes, many-to-one)"
    Data = UCRData
    Train = ClassifierTrain
    Meta = UCRMeta

    def load(self) -> None:
        d = self.cfg.data
        if d.train:
            train_path, test_path = d.train, d.test
        else:
            # The UCR archive's .tsv copies where present, else the lab's .csv: TRAIN, then TEST.
            train_path, test_path = data.fetch("electric-devices", self.data_dir).values()
        ucr = data.load_ucr(train_path, test_path, d.znorm, d.differences, d.sorted_levels)
        x, y = torch.from_numpy(ucr.x_train), torch.from_numpy(ucr.y_train)
        keep, held = stratified_holdout(y, d.val_fraction, self.cfg.train.seed)
        self.splits = {
            "train": {"x": x[keep], "y": y[keep]},
            "val": {"x": x[held], "y": y[held]},
            "test": {"x": torch.from_numpy(ucr.x_test), "y": torch.from_numpy(ucr.y_test)},
        }
        self.meta = {
            "features": x.shape[-1],
            "classes": [str(c) for c in ucr.classes],
            "length": x.shape[1],
        }

    def predict(self, model: nn.Module, inputs: list[str]) -> list[dict[str, Any]]:
        """Each input a file of series in the UCR format (its label column may hold any integer
        where the class is unknown): one row per series, the file's label (``given``), the
        predicted class and every class's probability; the file's name too when there are several."""
        d = self.cfg.data
        rows = []
        for name in inputs:
            where = {"file": Path(name).name} if len(inputs) > 1 else {}
            given, series = data.read_ucr(name)
            length = self.meta.get("length")  # absent from runs older than this check
            if length is not None and series.shape[1] != length:
                raise RnnlabError(
                    f"{name}: series of {series.shape[1]} readings, expected {length} like "
                    "the series the model learned from"
                )
            x = data.series_features(series, d.znorm, d.differences, d.sorted_levels)
            x = torch.from_numpy(x)
            answers = self.answers(model, {"x": x.to(self.device)})
            for row, (label, answer) in enumerate(zip(given.tolist(), answers, strict=True), 1):
                rows.append(where | {"row": row, "given": label} | answer)
        return rows

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return ManyToOne(
            self.meta["features"],
            len(self.meta["classes"]),
            m.recurrent_kwargs(),
            **m.head_kwargs(),
        )
