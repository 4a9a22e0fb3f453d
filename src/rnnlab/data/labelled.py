"""Your own labelled series, from the files people have: text tables or NumPy arrays.

Text (``.tsv``, ``.csv``, ``.txt``, anything else): one series a row, its label in one column (the
first by default, as the UCR archive writes them; or any, by index or header name) and its readings
in the others. The delimiter (tab, comma, semicolon or spaces) and a header row are found from the
file itself unless given. Labels may be words or numbers. A missing reading (an empty field, ``NaN``,
``NA``, ``?``; the UCR archive pads short series with NaN) is refused, naming its row and column, or
filled by interpolation along the series (``missing="interpolate"``), which says how many it filled.

NumPy: ``.npz`` with arrays ``x`` (N, T) or (N, T, F) and ``y`` (N,); ``.npy`` holding one (N, 1 + T)
table, the label first. Every bad layout is a one-line error naming the file, the row and what was
expected.
"""

from __future__ import annotations

import csv
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnlab.data.table import FLOAT32_MAX
from rnnlab.errors import RnnlabError, check_file

MISSING = {"", "nan", "na", "n/a", "?", "null", "none"}
DELIMITERS = {"tab": "\t", "comma": ",", "semicolon": ";", "space": " "}


@dataclass
class LabelledSeries:
    """Series and their labels as read: labels as text, readings (N, T, F) float64 (NaN where
    missing and not filled), and how many readings were filled."""

    labels: np.ndarray  # (N,) str
    series: np.ndarray  # (N, T, F) float64
    filled: int = 0


def _cell(text: str) -> float:
    """A reading; NaN where the field says nothing; a ValueError for a word."""
    value = text.strip()
    if value.lower() in MISSING:
        return math.nan
    return float(value)


def _delimiter(path: Path, first: str, delimiter: str) -> str | None:
    """The delimiter asked for, or the one the first line uses (None: runs of spaces)."""
    if delimiter != "auto":
        if delimiter not in DELIMITERS:
            raise RnnlabError(
                f"config key data.delimiter must be auto, {', '.join(DELIMITERS)}, got {delimiter!r}"
            )
        return None if delimiter == "space" else DELIMITERS[delimiter]
    for candidate in ("\t", ",", ";"):
        if candidate in first:
            return candidate
    if len(first.split()) > 1:
        return None
    raise RnnlabError(
        f"{path}: the first line has a single field; expected a label and readings separated by "
        "tabs, commas, semicolons or spaces"
    )


def _fields(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter))


def _is_reading(text: str) -> bool:
    try:
        _cell(text)
    except ValueError:
        return False
    return True


def read_labelled(
    path: str | Path,
    label: int | str = 0,
    delimiter: str = "auto",
    header: str = "auto",
    missing: str = "refuse",
) -> LabelledSeries:
    """Labelled series from ``path`` (text, ``.npz`` or ``.npy``; see the module's docstring).

    Args:
        label: the label's column: an index (0 = first; -1 = last) or a header name.
        delimiter: ``"auto"``, ``"tab"``, ``"comma"``, ``"semicolon"`` or ``"space"``.
        header: ``"auto"`` (a first row whose readings are words names the columns), ``"yes"``
            or ``"no"``.
        missing: ``"refuse"`` a missing reading, or ``"interpolate"`` it along the series.
    """
    path = Path(path)
    check_file(path, "labelled series: a text table, an .npz or an .npy file")
    if missing not in ("refuse", "interpolate"):
        raise RnnlabError(f"config key data.missing must be refuse or interpolate, got {missing!r}")
    if path.suffix == ".npz":
        labels, series = _read_npz(path)
    elif path.suffix == ".npy":
        labels, series = _read_npy(path)
    else:
        labels, series = _read_text(path, label, delimiter, header)
    return _settle_missing(path, LabelledSeries(labels, series), missing)


def _read_text(
    path: Path, label: int | str, delimiter: str, header: str
) -> tuple[np.ndarray, np.ndarray]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise RnnlabError(f"{path}: not UTF-8 text (byte {err.start})") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise RnnlabError(f"{path}: empty, expected one labelled series a line")
    sep = _delimiter(path, numbered[0][1], delimiter)
    rows = [(n, _fields(line, sep)) for n, line in numbered]
    width = len(rows[0][1])
    for n, fields in rows:
        if len(fields) != width:
            raise RnnlabError(
                f"{path}: line {n} has {len(fields)} fields, expected {width} like line "
                f"{rows[0][0]} (series of unequal lengths: pad them with NaN and set "
                "data.missing='interpolate')"
            )
    if width < 2:
        raise RnnlabError(f"{path}: rows have 1 field, expected a label and the readings")
    names = rows[0][1]
    if header not in ("auto", "yes", "no"):
        raise RnnlabError(f"config key data.header must be auto, yes or no, got {header!r}")
    column = _label_column(path, label, names, width)
    has_header = header == "yes" or (
        header == "auto" and any(not _is_reading(v) for i, v in enumerate(names) if i != column)
    )
    body = rows[1:] if has_header else rows
    if not body:
        raise RnnlabError(f"{path}: a header and no series below it")
    if isinstance(label, str) and not has_header:
        raise RnnlabError(f"{path}: no header row to find the label column {label!r} in")
    labels, values = [], np.empty((len(body), width - 1))
    for i, (n, fields) in enumerate(body):
        labels.append(fields[column].strip())
        readings = fields[:column] + fields[column + 1 :]
        for j, text in enumerate(readings):
            try:
                values[i, j] = _cell(text)
            except ValueError:
                col = j + 1 if j < column else j + 2
                shown = text if len(text) <= 30 else text[:27] + "..."
                raise RnnlabError(
                    f"{path}: line {n}, column {col}: {shown!r} is not a number (a reading)"
                ) from None
        if not labels[-1]:
            raise RnnlabError(f"{path}: line {n}, column {column + 1}: an empty label")
    huge = np.argwhere(np.abs(values) > FLOAT32_MAX)
    if huge.size:
        row, j = huge[0]
        raise RnnlabError(
            f"{path}: line {body[row][0]}: {values[row, j]:g} is beyond the range a model "
            f"computes in (±{FLOAT32_MAX:.3g})"
        )
    return np.array(labels, dtype=str), values[:, :, None]


def _label_column(path: Path, label: int | str, names: list[str], width: int) -> int:
    if isinstance(label, str):
        stripped = [n.strip() for n in names]
        if label not in stripped:
            raise RnnlabError(
                f"{path}: no column named {label!r} in the first line "
                f"({', '.join(map(repr, stripped[:8]))}{'...' if width > 8 else ''})"
            )
        return stripped.index(label)
    if not -width <= label < width:
        raise RnnlabError(
            f"config key data.label: column {label} of {path}, which has {width} columns"
        )
    return label % width


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                raise RnnlabError(
                    f"{path}: no array {missing[0]!r}; expected x (series, steps[, features]) and "
                    f"y (labels), found {', '.join(npz.files) or 'none'}"
                )
            x, y = npz["x"], npz["y"]
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise RnnlabError(f"{path}: not a readable .npz archive ({err})") from None
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise RnnlabError(
            f"{path}: x has shape {x.shape} and y {y.shape}; expected x (N, T) or (N, T, F) and "
            "y (N,), one label per series"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise RnnlabError(f"{path}: x holds {x.dtype}, expected numbers")
    return _label_text(y), x.astype(np.float64)


def _read_npy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise RnnlabError(f"{path}: not a readable .npy array ({err})") from None
    if table.ndim != 2 or table.shape[1] < 2 or not np.issubdtype(table.dtype, np.number):
        raise RnnlabError(
            f"{path}: an array of shape {table.shape} ({table.dtype}); expected a numeric table "
            "(N, 1 + T), the label first (or an .npz with x and y)"
        )
    return _label_text(table[:, 0]), table[:, 1:, None].astype(np.float64)


def _label_text(y: np.ndarray) -> np.ndarray:
    """Labels as text; whole numbers without a trailing ``.0``."""
    if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    return np.array([str(v).strip() for v in y.tolist()], dtype=str)


def _settle_missing(path: Path, data: LabelledSeries, missing: str) -> LabelledSeries:
    gaps = np.isnan(data.series)
    if not gaps.any():
        return data
    if missing == "refuse":
        row, step, _ = np.argwhere(gaps)[0]
        raise RnnlabError(
            f"{path}: series {row + 1}, reading {step + 1} is missing ({int(gaps.sum())} in all); "
            "set data.missing='interpolate' to fill them along each series"
        )
    series = data.series.copy()
    steps = np.arange(series.shape[1])
    for row, feature in zip(*np.nonzero(gaps.any(axis=1)), strict=True):
        values = series[row, :, feature]
        known = ~np.isnan(values)
        if not known.any():
            raise RnnlabError(f"{path}: series {row + 1} has no reading at all")
        series[row, :, feature] = np.interp(steps, steps[known], values[known])
    return LabelledSeries(data.labels, series, int(gaps.sum()))
