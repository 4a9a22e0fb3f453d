"""Lab task 2: which kind of device drew this day of electricity? (7 classes, many-to-one).

Data: the UCR ElectricDevices series, 96 readings a day (or any UCR ``_TRAIN``/``_TEST`` pair).
Model: a stack of LSTMs over the readings; a linear layer maps the last state to class logits.
What it learned: accuracy and macro-F1 on the test days, a confusion matrix, per-class scores.
``rnnlab predict RUN_DIR FILE`` classifies the days of a file in the UCR format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from rnnlab import data
from rnnlab.config import check_share
from rnnlab.errors import RnnlabError
from rnnlab.nn import ManyToOne
from rnnlab.tasks.classify import Classifier, ClassifierTrain, stratified_holdout


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
        rows = []
        for name in inputs:
            where = {"file": Path(name).name} if len(inputs) > 1 else {}
            given, series = data.read_ucr(name)
            answers = self._classify(model, series, name)
            for row, (label, answer) in enumerate(zip(given.tolist(), answers, strict=True), 1):
                rows.append(where | {"row": row, "given": label} | answer)
        return rows

    def predict_array(self, model: nn.Module, array: np.ndarray) -> list[dict[str, Any]]:
        """Series as an array of shape (series, steps): the predicted class of each."""
        series = np.asarray(array, dtype=np.float64)
        if series.ndim != 2:
            raise RnnlabError(
                f"an array of shape {series.shape}: expected (series, steps) readings"
            )
        answers = self._classify(model, series, "the array")
        return [{"row": row} | answer for row, answer in enumerate(answers, 1)]

    def _classify(self, model: nn.Module, series: np.ndarray, source: str) -> list[dict[str, Any]]:
        d = self.cfg.data
        length = self.meta.get("length")  # an optional entry of model.json (UCRMeta)
        if length is not None and series.shape[1] != length:
            raise RnnlabError(
                f"{source}: series of {series.shape[1]} readings, expected {length} like "
                "the series the model learned from"
            )
        x = data.series_features(series, d.znorm, d.differences, d.sorted_levels)
        return self.answers(model, {"x": torch.from_numpy(x).to(self.device)})

    def build_model(self) -> nn.Module:
        return ManyToOne(self.meta["features"], len(self.meta["classes"]), self.cfg.model)
