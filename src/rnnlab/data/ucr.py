"""UCR time-series classification files: ``NAME_TRAIN`` / ``NAME_TEST``, one series a row.

Each row is a class label then the readings, tab separated (UCR archive 2018, ``.tsv``) or comma
separated (older releases, the lab's ``.csv``); the delimiter is detected from the first line.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnlab.data.table import FLOAT32_MAX, beyond_float32
from rnnlab.errors import RnnlabError, check_file


@dataclass
class ClassificationData:
    """Series as sequences of one feature; labels renumbered 0..K-1 (``classes[k]`` is the original)."""

    x_train: np.ndarray  # (N, T, 1) float32
    y_train: np.ndarray  # (N,) int64 in 0..K-1
    x_test: np.ndarray  # (M, T, 1) float32
    y_test: np.ndarray  # (M,) int64
    classes: np.ndarray  # (K,) int64, the file's labels in increasing order


def _bad_field(path: Path, delimiter: str) -> RnnlabError | None:
    """The first row/column that numpy refused, as a one-line error (numpy's message lacks the file)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        width = None
        for row, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split(delimiter)
            width = width or len(fields)
            if len(fields) != width:
                return RnnlabError(
                    f"{path}: row {row} has {len(fields)} fields, expected {width} like row 1"
                )
            for col, value in enumerate(fields, start=1):
                try:
                    float(value)
                except ValueError:
                    what = "an integer class label" if col == 1 else "a number"
                    return RnnlabError(f"{path}: row {row}, column {col}: {value!r} is not {what}")
    return None


def read_ucr(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One UCR file: labels (N,) int64 as written, series (N, T) float64."""
    path = Path(path)
    check_file(path, "a UCR _TRAIN/_TEST file")
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    if not first.strip():
        raise RnnlabError(f"{path}: empty, expected rows of a class label then the readings")
    delimiter = "\t" if "\t" in first else ","
    try:
        table = np.loadtxt(path, delimiter=delimiter, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise _bad_field(path, delimiter) or RnnlabError(
            f"{path}: {' '.join(str(err).split())}"
        ) from None
    if table.shape[1] < 2:
        raise RnnlabError(f"{path}: rows have 1 field, expected a class label then the readings")
    missing = np.argwhere(~np.isfinite(table))
    if missing.size:
        row, col = missing[0]
        raise RnnlabError(
            f"{path}: row {row + 1}, column {col + 1}: {table[row, col]} is not a reading "
            f"(series of unequal lengths, padded with NaN, are not supported)"
        )
    huge = beyond_float32(table)
    if huge is not None:
        row, col = huge
        raise RnnlabError(
            f"{path}: row {row + 1}, column {col + 1}: {table[row, col]:g} is beyond the range a "
            f"model computes in (±{FLOAT32_MAX:.3g})"
        )
    labels = table[:, 0]
    bad = np.flatnonzero(labels != np.round(labels))
    if bad.size:
        raise RnnlabError(
            f"{path}: row {bad[0] + 1}, column 1: label {labels[bad[0]]:g} is not an integer"
        )
    return labels.astype(np.int64), table[:, 1:]


def check_ucr(path: Path, rows: int, length: int, labels: Container[int]) -> None:
    """Raise unless ``path`` holds ``rows`` series of ``length`` readings with labels in ``labels``."""
    y, x = read_ucr(path)
    if x.shape != (rows, length):
        raise RnnlabError(
            f"{path}: {x.shape[0]} rows of {x.shape[1] + 1} columns, "
            f"expected {rows} rows of {length + 1} columns"
        )
    wrong = [v for v in np.unique(y) if v not in labels]
    if wrong:
        raise RnnlabError(f"{path}: unexpected class label {wrong[0]}")


def _znorm(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=1, keepdims=True)
    # a constant series has no shape to normalise: it becomes all zeros rather than NaN
    return (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def series_features(
    x: np.ndarray, znorm: bool = False, differences: bool = False, sorted_levels: bool = False
) -> np.ndarray:
    """(N, T) readings -> (N, T, F) float32 model inputs, per series (new series get the same):

    - each series z-normalised, if ``znorm``;
    - the reading itself;
    - its change since the previous step (0 at the start), if ``differences``: edges without
      having to learn them;
    - the series' readings sorted from lowest to highest, if ``sorted_levels``: step t holds the
      t-th smallest reading, the series' levels whatever their time, which two households that
      run the same device at other hours share.
    """
    if znorm:
        x = _znorm(x)
    features = [x]
    if differences:
        features.append(np.diff(x, axis=1, prepend=x[:, :1]))
    if sorted_levels:
        features.append(np.sort(x, axis=1))
    return np.stack(features, axis=-1).astype(np.float32)


def load_ucr(
    train_path: str | Path,
    test_path: str | Path,
    znorm: bool = False,
    differences: bool = False,
    sorted_levels: bool = False,
) -> ClassificationData:
    """A UCR train/test pair; ``znorm`` normalises each series to mean 0, std 1 (per series, so
    nothing is learned from other rows and no statistic crosses the split); ``differences`` adds
    each step's change as a feature, so the recurrent cell sees edges without learning them, and
    ``sorted_levels`` the series' readings in ascending order (see :func:`series_features`)."""
    y_train, x_train = read_ucr(train_path)
    y_test, x_test = read_ucr(test_path)
    if x_train.shape[1] != x_test.shape[1]:
        raise RnnlabError(
            f"{test_path}: series of {x_test.shape[1]} readings, "
            f"expected {x_train.shape[1]} as in {train_path}"
        )
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise RnnlabError(
            f"{train_path}: every series has label {classes[0]}; a classifier needs at least two"
        )
    unseen = np.flatnonzero(~np.isin(y_test, classes))
    if unseen.size:
        raise RnnlabError(
            f"{test_path}: row {unseen[0] + 1}: label {y_test[unseen[0]]} never occurs in {train_path}"
        )
    return ClassificationData(
        x_train=series_features(x_train, znorm, differences, sorted_levels),
        y_train=np.searchsorted(classes, y_train).astype(np.int64),
        x_test=series_features(x_test, znorm, differences, sorted_levels),
        y_test=np.searchsorted(classes, y_test).astype(np.int64),
        classes=classes,
    )
