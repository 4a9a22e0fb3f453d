"""Your own series to forecast: the value ``ahead`` rows on, from the last ``lag`` rows (many-to-one).

The air-quality recipe (:mod:`rnnlab.tasks.air_quality`) on a CSV of yours: ``data.path`` and its
``data.columns`` (by index or header name; the first is forecast, the others are read beside it).
The rows are time steps in order: the first 80 % train (the last tenth of those validates), the
rest test, so no forecast reads its future. Set against persistence (the last value as the
forecast), as any forecast must be. The settings: a day of hourly history, an LSTM, Adam with a
cosine schedule and early stopping on validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnlab.config import check_given
from rnnlab.tasks.air_quality import AirQuality, AirQualityData


@dataclass
class ForecastData(AirQualityData):
    """A CSV of one time step a row; ``columns`` to read, the first forecast."""

    lag: int = 24

    def check(self) -> None:
        super().check()
        check_given(
            "data.path",
            self.path,
            "a CSV of one time step a row "
            "(--set data.path='series.csv' --set data.columns='[\"load\", \"temp\"]')",
        )


class Forecast(AirQuality):
    name = "series-forecast"
    summary = "your own series from a CSV: forecast a column from the last rows (regression)"
    Data = ForecastData
