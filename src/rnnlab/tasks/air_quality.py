"""Lab task 1: predict next hour's air quality from the previous ``lag`` hours (many-to-one).

Data: one London site's hourly series (``LondonAQ.npz``), or any numeric CSV (``data.path``).
Model: an LSTM reads the standardised window; a linear layer maps its last state to the value.
What it learned: MSE, MAE and R² on the test year, next to persistence (the last observed value),
the baseline any forecast must beat.
``rnnlab predict RUN_DIR FILE`` forecasts from a CSV of readings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab import data, plots
from rnnlab.config import check_at_least, check_positive, check_share
from rnnlab.data.airquality import Scaler, persistence
from rnnlab.errors import RnnlabError
from rnnlab.nn import ManyToOne, ManyToOneConfig
from rnnlab.schema import entry_error
from rnnlab.tasks.base import Task, Verdict
from rnnlab.tasks.metrics import ArrayLike, regression
from rnnlab.training.batches import Batch
from rnnlab.training.config import TrainConfig


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
    asinh_scale: float | None = None  # also feed each column as asinh(value / S): data.with_asinh
    # Forecast the change from the window's last value (persistence plus a learned correction).
    residual: bool = False

    def check(self) -> None:
        check_at_least("data", self, 1, "lag", "ahead", "train_rows", "test_rows")
        check_share("data.val_fraction", self.val_fraction)
        check_positive("data.asinh_scale", self.asinh_scale)
        if self.path and self.neighbours:
            raise RnnlabError("config key data.neighbours names LondonAQ sites; not with data.path")


@dataclass
class AirQualityTrain(TrainConfig):
    monitor: str = "val_mse"


class _ScalerJSON(TypedDict):
    mean: list[float]
    std: list[float]


class AirQualityMeta(TypedDict):
    """``model.json`` of an air-quality run: the features read and their standardisation."""

    features: int
    columns: list[str]
    scaler: _ScalerJSON


class AirQuality(Task):
    name = "air-quality"
    summary = "next-hour air quality regression (London, lag windows, many-to-one)"
    Data = AirQualityData
    Model = ManyToOneConfig
    Train = AirQualityTrain
    combine = "mean"
    Meta = AirQualityMeta

    def load(self) -> None:
        d = self.cfg.data
        options = {
            k: v
            for k, v in (("train_rows", d.train_rows), ("test_rows", d.test_rows))
            if v is not None
        }
        options["asinh_scale"] = d.asinh_scale
        if d.path:
            series = data.load_csv_series(
                d.path, columns=d.columns, lag=d.lag, ahead=d.ahead, **options
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
                **options,
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
            "features": series.x_train.shape[-1],
            "columns": list(series.columns),
            "scaler": {"mean": series.scaler.mean.tolist(), "std": series.scaler.std.tolist()},
        }

    def build_model(self) -> nn.Module:
        return ManyToOne(self.meta["features"], 1, self.cfg.model)

    def forecast(self, model: nn.Module, batch: Batch) -> Tensor:
        """Standardised forecasts (N,): the model's output; with ``data.residual``, added to the
        window's last value of the forecast column, so the model learns the change and starts
        where persistence is."""
        out = model(batch["x"]).squeeze(-1)
        return out + batch["x"][:, -1, 0] if self.cfg.data.residual else out

    def loss(self, model: nn.Module, batch: Batch, state: Any) -> tuple[Tensor, Any]:
        return F.mse_loss(self.forecast(model, batch).float(), batch["y"]), None

    def check_meta(self, path: Path) -> None:
        scaler = self.meta["scaler"]
        if not len(scaler["mean"]) == len(scaler["std"]) == self.meta["features"]:
            raise entry_error(
                path, "scaler", f"should hold {self.meta['features']} means and spreads"
            )
        if min(scaler["std"]) <= 0:
            raise entry_error(path, "scaler.std", "should be above 0 (it divides every reading)")

    def _scaler(self) -> Scaler:
        """The training rows' standardisation, as saved in ``model.json``."""
        return Scaler(np.array(self.meta["scaler"]["mean"]), np.array(self.meta["scaler"]["std"]))

    def _raw(self, y: Tensor) -> np.ndarray:
        """Standardised values back in the series' units."""
        return self._scaler().inverse(y.double().cpu().numpy())

    def predict(self, model: nn.Module, inputs: list[str]) -> list[dict[str, Any]]:
        """Each input a CSV of consecutive readings in the columns the model reads (a run on a
        CSV: its ``data.columns``; on the London archive: the site's, then each neighbour's): for
        every ``lag`` rows in a row, the forecast ``ahead`` rows after the last, in the series' units.
        The last row of each file's answer is the forecast beyond its end."""
        d = self.cfg.data
        rows = []
        for name in inputs:
            values, _ = data.read_series(name, d.columns if d.path else None)
            where = {"file": Path(name).name} if len(inputs) > 1 else {}
            rows += [where | row for row in self._forecasts(model, values, name)]
        return rows

    def predict_array(self, model: nn.Module, array: np.ndarray) -> list[dict[str, Any]]:
        """Consecutive readings as an array of shape (rows,) or (rows, columns), the columns the
        model reads: the forecasts, as :meth:`predict` gives them for a CSV."""
        values = np.asarray(array, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise RnnlabError(
                f"an array of shape {values.shape}: expected (rows, columns) readings"
            )
        return self._forecasts(model, values, "the array")

    def _forecasts(self, model: nn.Module, values: np.ndarray, source: str) -> list[dict[str, Any]]:
        d, columns = self.cfg.data, self.meta["columns"]
        if values.shape[1] != len(columns):
            raise RnnlabError(
                f"{source}: {values.shape[1]} columns, expected {len(columns)}: {', '.join(columns)}"
            )
        if len(values) < d.lag:
            raise RnnlabError(f"{source}: {len(values)} rows, expected at least data.lag={d.lag}")
        table = data.with_asinh(values, d.asinh_scale)
        x = data.windows(self._scaler().transform(table), d.lag).astype(np.float32)
        windows = {"x": torch.from_numpy(x).to(self.device)}
        forecast = self._raw(self.outputs(model, windows, self.forecast))
        return [
            {"after row": last, "row": last + d.ahead, "forecast": value}
            for last, value in enumerate(forecast.tolist(), start=d.lag)
        ]

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        pred = self.outputs(model, split, self.forecast)
        true = self.splits[split]["y"]
        scores = {f"{split}_{k}": v for k, v in regression(true, pred).items()}
        if split == "test":
            raw = regression(self._raw(true), self._raw(pred))
            scores.update({f"test_{k}_raw": v for k, v in raw.items()})
            last = persistence(self.splits[split]["x"])  # the last observed value
            pairs: dict[str, tuple[ArrayLike, ArrayLike]] = {
                "": (true, last),
                "_raw": (self._raw(true), self._raw(last)),
            }
            for suffix, (t, p) in pairs.items():
                base = regression(t, p)
                scores[f"persistence_mse{suffix}"] = base["mse"]
                scores[f"persistence_r2{suffix}"] = base["r2"]
            # How far the forecast's squared errors fall below persistence's, in standard errors.
            gain = ((last - true) ** 2 - (pred - true) ** 2).double()
            spread = float(gain.std()) / max(len(gain), 1) ** 0.5
            scores["persistence_gain_z"] = float(gain.mean()) / spread if spread > 0 else 0.0
        return scores

    def verdict(self, metrics: dict[str, Any]) -> Verdict | None:
        """Test MSE against persistence (the last observed value as the forecast): learned where
        its squared errors are lower by two standard errors (of the difference, hour by hour)."""
        mse, base = metrics["test_mse"], metrics["persistence_mse"]
        learned = mse < base and metrics["persistence_gain_z"] > 2.0
        causes = [
            "a window (data.lag) too short to see what comes next",
            "too few epochs, or a learning rate too high or too low",
            "a target that persistence already forecasts well: few hours ahead, a slow series",
        ]
        d = self.cfg.data
        tries = [f"--set data.lag={2 * d.lag}", "--set train.epochs=60", "--set train.lr=3e-3"]
        if not d.residual:
            tries.append("--set data.residual=true (learn the change from the last value)")
        return Verdict(
            "test MSE", mse, "persistence", base, learned,
            [] if learned else causes, [] if learned else tries,
        )  # fmt: skip

    def report(self, run_dir: Path, model: nn.Module) -> dict[str, Any]:
        window = slice(0, 24 * 14)  # two weeks of test hours
        split = self.splits["test"]
        pred = self.outputs(model, "test", self.forecast)
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
