"""Time series regression: the lab's London air quality, or any CSV of numeric columns.

A series of R rows and F columns becomes windows of ``lag`` consecutive rows, each labelled with the
first column's value ``ahead`` rows after the window's last row (the lab's ``lagged_vector``). Train
windows come from the first ``train_rows`` rows, test windows from the next ``test_rows``, so no window
spans the split.
"""

from __future__ import annotations

import difflib
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from torch import Tensor

from rnnlab.data.table import FLOAT32_MAX, beyond_float32, read_csv
from rnnlab.errors import RnnlabError, check_file

SITES = ("GEltham", "GWesthorne", "BSladeGreen", "GWoolwich")


@dataclass
class Scaler:
    """Per-column standardisation, ``(x - mean) / std``, as the lab's sklearn ``StandardScaler``."""

    mean: np.ndarray  # (F,) float64
    std: np.ndarray  # (F,) float64, population std (ddof=0) as sklearn

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        std = x.std(axis=0)
        return cls(
            mean=x.mean(axis=0), std=np.where(std > 0, std, 1.0)
        )  # a constant column stays 0

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, x: np.ndarray, column: int = 0) -> np.ndarray:
        """Standardised values of one column back in raw units."""
        return x * self.std[column] + self.mean[column]


@dataclass
class RegressionData:
    """Standardised windows and targets; the target is ``columns[0]``."""

    x_train: np.ndarray  # (N, lag, F) float32
    y_train: np.ndarray  # (N,) float32
    x_test: np.ndarray  # (M, lag, F) float32
    y_test: np.ndarray  # (M,) float32
    scaler: Scaler  # fitted on the training rows only, one entry per feature
    columns: tuple[str, ...]  # the series' columns (with ``asinh_scale``, half the F features)

    def to_raw(self, y: np.ndarray) -> np.ndarray:
        """Standardised targets (or predictions) in the series' own units, for ``_raw`` metrics."""
        return self.scaler.inverse(np.asarray(y, dtype=np.float64), column=0)


Windows = TypeVar("Windows", np.ndarray, Tensor)


def persistence(x: Windows) -> Windows:
    """The persistence forecast, each window's last target value: (N, lag, F) -> (N,)."""
    return x[:, -1, 0]


def windows(series: np.ndarray, lag: int) -> np.ndarray:
    """Every window ``series[i : i+lag]`` of a (R, F) series: (R - lag + 1, lag, F), views."""
    return np.lib.stride_tricks.sliding_window_view(series, lag, axis=0).transpose(0, 2, 1)


def with_asinh(values: np.ndarray, scale: float | None) -> np.ndarray:
    """The model's features: the (R, F) readings, then with ``scale`` each column again as
    ``asinh(value / scale)``, (R, 2F).

    Pollution readings have a heavy tail of spikes (GEltham: median 16, 99th percentile 65, highest
    325). asinh is linear near zero and logarithmic beyond ``scale``, so this view spreads out the
    ordinary hours and compresses the spikes that dominate a standardised column; it is defined for
    negative readings too, unlike a log. The target stays the first raw column.
    """
    if scale is None:
        return values
    if not scale > 0:  # a negative scale would mirror the view, zero divides by it
        raise RnnlabError(f"asinh scale must be > 0, got {scale}")
    return np.concatenate([values, np.arcsinh(values / scale)], axis=1)


def lag_windows(series: np.ndarray, lag: int, ahead: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``series[i : i+lag]`` (N, lag, F) and targets ``series[i+lag+ahead-1, 0]`` (N,)."""
    if len(series) < lag + ahead:
        raise RnnlabError(
            f"a series of {len(series)} rows is too short for lag={lag}, ahead={ahead}"
        )
    return windows(series[: len(series) - ahead], lag), series[lag + ahead - 1 :, 0]


def _regression(
    values: np.ndarray,
    names: tuple[str, ...],
    train_rows: int,
    test_rows: int,
    lag: int,
    ahead: int,
    source: Path,
    asinh_scale: float | None,
) -> RegressionData:
    if lag < 1 or ahead < 1:
        raise RnnlabError(f"lag={lag}, ahead={ahead}: both must be at least 1")
    if train_rows + test_rows > len(values):
        raise RnnlabError(
            f"{source}: {len(values)} rows, expected at least {train_rows} train + {test_rows} test"
        )
    if min(train_rows, test_rows) < lag + ahead:
        raise RnnlabError(
            f"{source}: {train_rows} train / {test_rows} test rows, each needs at least "
            f"lag + ahead = {lag + ahead}"
        )
    features = with_asinh(values, asinh_scale)
    train, test = features[:train_rows], features[train_rows : train_rows + test_rows]
    # The lab fits its StandardScaler on all rows, test included, which leaks the test period's
    # mean and spread into training; fitting on the training rows alone does not.
    scaler = Scaler.fit(train)
    x_train, y_train = lag_windows(scaler.transform(train), lag, ahead)
    x_test, y_test = lag_windows(scaler.transform(test), lag, ahead)
    f32 = np.float32
    return RegressionData(
        x_train.astype(f32),
        y_train.astype(f32),
        x_test.astype(f32),
        y_test.astype(f32),
        scaler,
        names,
    )


def load_air_quality(
    path: str | Path,
    site: str = "GEltham",
    columns: Sequence[int] = (0,),
    lag: int = 6,
    ahead: int = 1,
    train_rows: int = 35064,
    test_rows: int = 8784,
    neighbours: Sequence[str] = (),
    asinh_scale: float | None = None,
) -> RegressionData:
    """The lab's ``LondonAQ.npz``: one site, the given columns (the first is predicted).

    ``neighbours`` adds the same columns of other sites as features, hour by hour: air at nearby
    sites moves together, so their readings help forecast this one. ``asinh_scale``: see
    :func:`with_asinh`.
    """
    path = Path(path)
    check_file(path, "LondonAQ.npz, see `rnnlab data fetch`")
    sites = [site, *neighbours]
    try:
        with np.load(path) as npz:
            for name in sites:
                if name not in npz.files:
                    close = difflib.get_close_matches(name, npz.files, n=1)
                    hint = f"did you mean '{close[0]}'? " if close else ""
                    raise RnnlabError(
                        f"{path}: no site '{name}': {hint}sites: {', '.join(npz.files)}"
                    )
            tables = [npz[name] for name in sites]
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise RnnlabError(f"{path}: not a readable .npz archive ({err})") from None
    columns = list(columns)
    width = min(t.shape[1] for t in tables)
    bad = [c for c in columns if not isinstance(c, int) or not 0 <= c < width]
    if bad or not columns:
        raise RnnlabError(
            f"{path}: site {site} has columns 0..{width - 1} (numbers, no names), got {columns}"
        )
    names = tuple(f"{name}[{c}]" for name in sites for c in columns)
    table = np.concatenate([t[:, columns] for t in tables], axis=1)
    return _regression(table, names, train_rows, test_rows, lag, ahead, path, asinh_scale)


def load_csv_series(
    path: str | Path,
    columns: Sequence[int | str] = (0,),
    lag: int = 6,
    ahead: int = 1,
    train_rows: int | None = None,
    test_rows: int | None = None,
    asinh_scale: float | None = None,
) -> RegressionData:
    """Any CSV, one time step a row, with or without a header row; ``columns`` by index or header
    name, the first is predicted. Default split: first 80 % of the rows train, the rest test.
    Other columns (dates, ids) may hold anything. ``asinh_scale``: see :func:`with_asinh`."""
    path = Path(path)
    values, names = read_series(path, columns)
    n_train = int(0.8 * len(values)) if train_rows is None else train_rows
    n_test = len(values) - n_train if test_rows is None else test_rows
    return _regression(values, names, n_train, n_test, lag, ahead, path, asinh_scale)


def read_series(
    path: str | Path, columns: Sequence[int | str] | None = (0,)
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The ``columns`` (index or header name; None: all) of a CSV with or without a header row:
    (R, F) float64 readings and the columns' names."""
    path = Path(path)
    rows = read_csv(path, "a CSV of numeric columns")
    # A header row holds a name where the rows below hold numbers; a first row that is text only
    # where every row is (a date column) is data, not to be dropped as a header.
    # (A file of one row: any text in it names a column.)
    first_row = rows[0][1]
    below = rows[1][1] if len(rows) > 1 else ["0"] * len(first_row)
    named = (not _is_number(v) and _is_number(w) for v, w in zip(first_row, below, strict=False))
    header = first_row if any(named) else None
    width = len(rows[0][1])
    columns = range(width) if columns is None else columns
    if not columns:
        raise RnnlabError(f"{path}: columns is empty, expected at least the target column")
    index = []
    for c in columns:
        if isinstance(c, str) and header is not None and c in header:
            index.append(header.index(c))
        elif isinstance(c, int) and 0 <= c < width:
            index.append(c)
        else:
            known = ", ".join(header) if header else f"0..{width - 1}"
            raise RnnlabError(f"{path}: no column {c!r}, columns: {known}")
    first = 1 if header else 0
    values = np.empty((len(rows) - first, len(index)))
    for i, (line, r) in enumerate(rows[first:]):
        for j, c in enumerate(index):
            if not _is_number(r[c]):
                shown = r[c] if len(r[c]) <= 40 else r[c][:37] + "..."  # a line of another format
                raise RnnlabError(f"{path}: line {line}, column {c + 1}: {shown!r} is not a number")
            values[i, j] = float(r[c])
    huge = beyond_float32(values)
    if huge is not None:
        line, fields = rows[first + huge[0]]
        raise RnnlabError(
            f"{path}: line {line}, column {index[huge[1]] + 1}: {fields[index[huge[1]]]} is beyond "
            f"the range a model computes in (±{FLOAT32_MAX:.3g})"
        )
    return values, tuple(header[c] if header else str(c) for c in index)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
