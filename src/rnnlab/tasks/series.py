"""Your own labelled series: which class does each series belong to? (many-to-one, any length)

Data: a file of labelled series (UCR ``_TRAIN``/``_TEST`` files, a CSV of any layout, NumPy arrays:
:mod:`rnnlab.data.labelled`), and a test file, or a stratified share of the one file held out. Each
series is normalised on its own (mean 0, spread 1), and a stratified share of the training series
is held out for validation: early stopping and the best epoch read it, never the test series.
Model: a learned downsampling front-end for long series (its stride chosen so that the recurrence
reads at most ``model.max_steps`` steps), a recurrent stack read in both directions, the mean and
the max of its outputs over time, a linear layer to the classes.
Training: settings chosen to work on the UCR panel's 23 to 600 training series of 80 to 720
readings and 2 to 50 classes without tuning (``benchmarks/panel.py`` measures them): AdamW with a
cosine schedule over an epoch budget that grows as the training set shrinks, so that every dataset
gets about ``train.steps`` optimizer steps.
What it learned: accuracy, macro-F1 and a confusion matrix on the test series, beside the majority
class's accuracy; ``rnnlab predict RUN_DIR FILE`` classifies the series of a file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.config import Config, check_at_least, check_given, check_share
from rnnlab.data.labelled import read_labelled
from rnnlab.data.tweets import check_classes
from rnnlab.errors import RnnlabError
from rnnlab.nn import ManyToOne, ManyToOneConfig
from rnnlab.tasks.classify import Classifier, ClassifierTrain, stratified_holdout
from rnnlab.training.batches import Batch, Batches, TensorBatches


@dataclass
class SeriesData:
    """Where the series are and how they are read (see :func:`rnnlab.data.labelled.read_labelled`)."""

    train: str | None = None
    test: str | None = None  # none: a stratified test_fraction of train is held out
    label: int | str = 0  # the label's column: an index (0 = first) or a header name
    delimiter: str = "auto"  # auto, tab, comma, semicolon or space
    header: str = "auto"  # auto, yes or no
    missing: str = "refuse"  # refuse, or interpolate a missing reading along its series
    znorm: bool = True  # each series to mean 0 and spread 1
    # Each training batch's series scaled by a random factor and jittered: a few dozen series
    # seen in many versions, as a few dozen real ones vary.
    augment: bool = True
    val_fraction: float = 0.2
    test_fraction: float = 0.3
    split_seed: int = 0  # the test split's shuffle, apart from train.seed

    def check(self) -> None:
        check_given(
            "data.train",
            self.train,
            "a file of labelled series (--set data.train='X_TRAIN.tsv', and data.test for its "
            "test file)",
        )
        check_share("data.val_fraction", self.val_fraction)
        check_share("data.test_fraction", self.test_fraction)


@dataclass
class SeriesModel(ManyToOneConfig):
    """The model for any series: ``downsample = 0`` chooses the front-end's stride from the
    series' length, so that the recurrence reads at most ``max_steps`` steps."""

    cell: str = "gru"
    hidden: int = 64
    bidirectional: bool = True
    pool: Literal["last", "mean", "max", "meanmax"] = "meanmax"
    downsample: int = 0
    frontend_layers: int = 2
    head_dropout: float = 0.2
    max_steps: int = 100

    def check(self) -> None:
        check_at_least("model", self, 0, "downsample")
        check_at_least("model", self, 1, "max_steps")
        # 0 (auto) is settled once the series' length is known; every other rule holds now.
        ManyToOneConfig.check(dataclasses.replace(self, downsample=self.downsample or 1))

    def stride(self, length: int) -> int:
        """The front-end's stride for series of ``length`` readings (1: no front-end)."""
        if self.downsample:
            return self.downsample
        return max(1, math.ceil(length / self.max_steps))


@dataclass
class SeriesTrain(ClassifierTrain):
    """Training settings that adapt to the data: ``epochs = 0`` and ``batch_size = 0`` choose
    them from the number of training series (about ``steps`` optimizer steps in all)."""

    epochs: int = 0
    batch_size: int = 0
    passes: int = 0  # passes through the training series an epoch (0: an epoch of ~20 steps)
    steps: int = 1000
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-2
    schedule: Literal["constant", "cosine", "onecycle"] = "cosine"
    clip_norm: float | None = 1.0
    label_smoothing: float = 0.1
    monitor: str = "val_accuracy"
    ties: Literal["earlier", "later"] = "later"
    # Fewer training series than this (validation's included): the few validation series only
    # watch the training, and a fresh model then trains on all the series for the whole budget
    # (0: never). Five series cannot choose an epoch (ECGFiveDays: 0.2 on validation while the
    # test reached 0.99), and a fifth of two dozen held out costs more than the choice is worth.
    refit_below: int = 200

    def check(self) -> None:
        check_at_least("train", self, 0, "epochs", "batch_size", "passes", "refit_below")
        check_at_least("train", self, 1, "steps")
        # 0 (auto) is settled once the data's size is known; every other rule holds now.
        settled = dataclasses.replace(
            self, epochs=self.epochs or 1, batch_size=self.batch_size or 1
        )
        ClassifierTrain.check(settled)

    def settled(self, series: int) -> SeriesTrain:
        """The settings for ``series`` training series: a batch of about a tenth of them (8 to
        64), epochs of at least 20 steps (several passes through a small set), and epochs for
        about ``steps`` steps in all (10 to 500)."""
        batch = self.batch_size or min(64, max(8, series // 10))
        per_pass = math.ceil(series / batch)
        passes = self.passes or math.ceil(20 / per_pass)
        epochs = self.epochs or min(500, max(10, round(self.steps / (per_pass * passes))))
        return dataclasses.replace(self, batch_size=batch, passes=passes, epochs=epochs)


class SeriesMeta(TypedDict):
    """``model.json`` of a series classifier: features per step, class names, series length."""

    features: int
    classes: list[str]
    length: int


def _class_order(labels: np.ndarray) -> list[str]:
    """The labels' classes, in numeric order where every label is a number, else in text order."""
    names = sorted(set(labels.tolist()))
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


class SeriesClassification(Classifier):
    name = "series-classification"
    summary = "your own labelled series (UCR files, CSV, NumPy): settings that need no tuning"
    Data = SeriesData
    Model = SeriesModel
    Train = SeriesTrain
    Meta = SeriesMeta

    causes = (
        "labels the series do not determine: the wrong label column, or shuffled rows",
        "too few training series a class to tell the classes apart",
        "a difference finer than the front-end's stride on long series",
    )
    tries = (
        "--set data.label=N (the label's column: 0 the first, -1 the last, or its header name)",
        "--set train.steps=3000",
        "--set model.max_steps=300 (a finer stride on long series)",
        "--set model.cell='lstm'",
    )

    def __init__(self, cfg: Config, data_dir: Path | None = None) -> None:
        super().__init__(cfg, data_dir)
        self.notes: list[str] = []  # what reading the files did that the user should know

    def _read(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        d = self.cfg.data
        data = read_labelled(path, d.label, d.delimiter, d.header, d.missing)
        if data.filled:
            self.notes.append(f"{path}: {data.filled} missing readings filled by interpolation")
        return data.labels, data.series

    def load(self) -> None:
        d, seed = self.cfg.data, self.cfg.train.seed
        assert d.train is not None  # SeriesData.check
        labels, series = self._read(d.train)
        classes = _class_order(labels)
        check_classes(Path(d.train), "label", classes)
        index = {name: k for k, name in enumerate(classes)}
        y = torch.tensor([index[v] for v in labels.tolist()])
        if d.test is not None:
            test_labels, test_series = self._read(d.test)
            unseen = [v for v in test_labels.tolist() if v not in index]
            if unseen:
                raise RnnlabError(f"{d.test}: label {unseen[0]!r} never occurs in {d.train}")
            if test_series.shape[1:] != series.shape[1:]:
                raise RnnlabError(
                    f"{d.test}: series of {test_series.shape[1]} readings, expected "
                    f"{series.shape[1]} as in {d.train}"
                )
            y_test = torch.tensor([index[v] for v in test_labels.tolist()])
        else:
            keep, held = stratified_holdout(y, d.test_fraction, d.split_seed)
            test_series, y_test = series[held.numpy()], y[held]
            series, y = series[keep.numpy()], y[keep]
        x = torch.from_numpy(self._features(series))
        keep, held = stratified_holdout(y, d.val_fraction, seed)
        self.splits = {
            "train": {"x": x[keep], "y": y[keep]},
            "val": {"x": x[held], "y": y[held]},
            "test": {"x": torch.from_numpy(self._features(test_series)), "y": y_test},
        }
        self.meta = {"features": x.shape[-1], "classes": classes, "length": x.shape[1]}
        self.cfg = dataclasses.replace(
            self.cfg, train=self.cfg.train.settled(len(self.splits["train"]["y"]))
        )

    def _features(self, series: np.ndarray) -> np.ndarray:
        """(N, T, F) readings -> model inputs, each series normalised on its own if asked."""
        if self.cfg.data.znorm:
            mean = series.mean(axis=1, keepdims=True)
            std = series.std(axis=1, keepdims=True)
            series = (series - mean) / np.where(std > 0, std, 1.0)
        return series.astype(np.float32)

    def prepare_training(self) -> str | None:
        t, m = self.cfg.train, self.cfg.model
        counts = np.bincount(
            self.splits["train"]["y"].cpu().numpy(), minlength=len(self.meta["classes"])
        )
        stride = m.stride(self.meta["length"])
        front = f", read {stride} readings a step" if stride > 1 else ""
        lines = [
            *self.notes,
            f"{len(counts)} classes of {int(counts.min())} to {int(counts.max())} training series "
            f"each; {self.meta['length']} readings a series{front}; "
            f"{t.epochs} epochs of {t.passes} pass(es) in batches of {t.batch_size} "
            "(train.epochs, train.passes, train.batch_size)",
        ]
        return "\n".join(lines)

    def loss(self, model: nn.Module, batch: Batch, state: Any) -> tuple[Tensor, Any]:
        if self.cfg.data.augment:
            x = batch["x"]
            scale = 1.0 + 0.1 * torch.randn(x.shape[0], 1, 1, device=x.device)
            batch = {**batch, "x": x * scale + 0.05 * torch.randn_like(x)}
        return super().loss(model, batch, state)

    def refit_epochs(self, best_epoch: int) -> int:
        """The whole epoch budget where the series are fewer than ``train.refit_below``."""
        series = sum(len(self.splits[name]["y"]) for name in ("train", "val"))
        return self.cfg.train.epochs if series < self.cfg.train.refit_below else 0

    def train_batches(self) -> Batches:
        t = self.cfg.train
        return TensorBatches(self.splits["train"], t.batch_size, True, t.seed, t.passes)

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        config = dataclasses.replace(m, downsample=m.stride(self.meta["length"]))
        return ManyToOne(self.meta["features"], len(self.meta["classes"]), config)

    def predict(self, model: nn.Module, inputs: list[str]) -> list[dict[str, Any]]:
        """Each input a file of series laid out as the training file (its label column may hold
        anything where the class is unknown): one row per series, the file's label (``given``),
        the predicted class and every class's probability."""
        rows = []
        for name in inputs:
            labels, series = self._read(name)
            where = {"file": Path(name).name} if len(inputs) > 1 else {}
            answers = self._classify(model, series, name)
            for row, (given, answer) in enumerate(zip(labels.tolist(), answers, strict=True), 1):
                rows.append(where | {"row": row, "given": given} | answer)
        return rows

    def predict_array(self, model: nn.Module, array: np.ndarray) -> list[dict[str, Any]]:
        """Series as an array of shape (series, steps) or (series, steps, features): the
        predicted class of each and every class's probability."""
        series = np.asarray(array, dtype=np.float64)
        if series.ndim == 2:
            series = series[..., None]
        if series.ndim != 3:
            raise RnnlabError(
                f"an array of shape {series.shape}: expected (series, steps) or "
                "(series, steps, features) readings"
            )
        answers = self._classify(model, series, "the array")
        return [{"row": row} | answer for row, answer in enumerate(answers, 1)]

    def _classify(self, model: nn.Module, series: np.ndarray, source: str) -> list[dict[str, Any]]:
        if series.shape[1:] != (self.meta["length"], self.meta["features"]):
            raise RnnlabError(
                f"{source}: series of {series.shape[1]} readings of {series.shape[2]} features, "
                f"expected {self.meta['length']} of {self.meta['features']} like the series the "
                "model learned from"
            )
        x = torch.from_numpy(self._features(series)).to(self.device)
        return self.answers(model, {"x": x})
