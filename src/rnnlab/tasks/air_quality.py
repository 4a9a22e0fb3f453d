"""Lab task 1: predict next hour's air quality from the previous ``lag`` hours (many-to-one).

Data: one London site's hourly series (``LondonAQ.npz``), or any numeric CSV (``data.path``).
Model: an LSTM reads the standardised window; a linear layer maps its last state to the value.
What it learned: MSE, MAE and R² on the test year, next to persistence (the last observed value),
the baseline any forecast must beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab import data, plots
from rnnlab.config import ManyToOneModel, TrainConfig, check_at_least, check_share
from rnnlab.data.airquality import Scaler, persistence
from rnnlab.errors import RnnlabError
from rnnlab.metrics import regression
from rnnlab.models import ManyToOne
from rnnlab.tasks.base import Task
from rnnlab.train import Batch


@dataclass
class AirQualityData:
    """Where the series comes from and how it is cut into windows."""

    site: str = "GEltham"
    neighbours: list[str] = field(default_factory=list)  # other sites' columns as features
    columns: list[int | str] = field(default_factory=lambda: [0])  # CSV: index or header name
    lag: int = 6
    ahead: int = 1
    path: str | None = None
    train_rows: int | None = None
    test_rows: int | None = None
    val_fraction: float = 0.1

    def check(self) -> None:
        check_at_least("data", self, 1, "lag", "ahead", "train_rows", "test_rows")
        check_share("data.val_fraction", self.val_fraction)
        if self.path and self.neighbours:
            raise RnnlabError("config key data.neighbours names LondonAQ sites; not with data.path")


@dataclass
class AirQualityTrain(TrainConfig):
    monitor: str = "val_mse"


class AirQuality(Task):
    name = "air-quality"
    summary = "next-hour air quality regression (London, lag windows, many-to-one)"
    Data = AirQualityData
    Model = ManyToOneModel
    Train = AirQualityTrain
    combine = "mean"

    def load(self) -> None:
        d = self.cfg.data
        rows = {
            k: v
            for k, v in (("train_rows", d.train_rows), ("test_rows", d.test_rows))
            if v is not None
        }
        if d.path:
            series = data.load_csv_series(
                d.path, columns=d.columns, lag=d.lag, ahead=d.ahead, **rows
            )
        else:
            npz = data.fetch("london-aq", self.data_dir)["LondonAQ.npz"]
            series = data.load_air_quality(
                npz,
                site=d.site,
                columns=d.columns,
                lag=d.lag,
                ahead=d.ahead,
                neighbours=d.neighbours,
                **rows,
            )
        # Validation: the last hours of the training period, in time order (no look-ahead).
        n_val = max(1, int(len(series.x_train) * d.val_fraction))
        x, y = torch.from_numpy(series.x_train), torch.from_numpy(series.y_train)
        self.splits = {
            "train": {"x": x[:-n_val], "y": y[:-n_val]},
            "val": {"x": x[-n_val:], "y": y[-n_val:]},
            "test": {"x": torch.from_numpy(series.x_test), "y": torch.from_numpy(series.y_test)},
        }
        self.meta = {
            "features": len(series.columns),
            "columns": list(series.columns),
            "scaler": {"mean": series.scaler.mean.tolist(), "std": series.scaler.std.tolist()},
        }

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return ManyToOne(self.meta["features"], 1, m.recurrent_kwargs(), **m.head_kwargs())

    def loss(self, model: nn.Module, batch: Batch, state: Any) -> tuple[Tensor, Any]:
        return F.mse_loss(model(batch["x"]).squeeze(-1).float(), batch["y"]), None

    def _raw(self, y: Tensor) -> np.ndarray:
        """Standardised values back in the series' units (the scaler saved in ``model.json``)."""
        scaler = Scaler(np.array(self.meta["scaler"]["mean"]), np.array(self.meta["scaler"]["std"]))
        return scaler.inverse(y.double().cpu().numpy())

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        pred = self.outputs(model, split).squeeze(-1)
        true = self.splits[split]["y"]
        scores = {f"{split}_{k}": v for k, v in regression(true, pred).items()}
        if split == "test":
            raw = regression(self._raw(true), self._raw(pred))
            scores.update({f"test_{k}_raw": v for k, v in raw.items()})
            last = persistence(self.splits[split]["x"])  # the last observed value
            for suffix, (t, p) in {
                "": (true, last),
                "_raw": (self._raw(true), self._raw(last)),
            }.items():
                base = regression(t, p)
                scores[f"persistence_mse{suffix}"] = base["mse"]
                scores[f"persistence_r2{suffix}"] = base["r2"]
        return scores

    def report(self, run_dir: Path, model: nn.Module) -> dict[str, Any]:
        window = slice(0, 24 * 14)  # two weeks of test hours
        split = self.splits["test"]
        pred = self.outputs(model, "test").squeeze(-1)
        d = self.cfg.data
        # A CSV's rows need not be hours: its plot says steps, the file's name for the site's.
        title, xlabel = f"{d.site}: first two test weeks", "test step (hours)"
        if d.path:
            title = f"{Path(d.path).name}: first {len(split['y'][window])} test steps"
            xlabel = "test step (rows of the file)"
        plots.predictions(
            self._raw(split["y"][window]),
            self._raw(pred[window]),
            run_dir / "predictions.png",
            title=title,
            xlabel=xlabel,
            baseline=self._raw(persistence(split["x"][window])),
        )
        return {}
