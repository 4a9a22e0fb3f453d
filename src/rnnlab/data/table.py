"""CSV reading shared by the series and tweet loaders: rows with their line numbers, one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from rnnlab.errors import RnnlabError, check_file


def read_csv(path: Path, expected: str) -> list[tuple[int, list[str]]]:
    """The non-blank rows of ``path`` as (line number, fields), every row as wide as the first.

    ``expected`` describes the file for the messages (e.g. "a CSV of numeric columns").
    """
    check_file(path, expected)
    try:
        with open(
            path, newline="", encoding="utf-8-sig"
        ) as f:  # -sig: drop a BOM before the header
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader if r]
    except (csv.Error, UnicodeDecodeError) as err:
        raise RnnlabError(
            f"{path}: not a readable UTF-8 CSV ({err}), expected {expected}"
        ) from None
    if not rows:
        raise RnnlabError(f"{path}: empty, expected {expected}")
    first, width = rows[0][0], len(rows[0][1])
    for line, fields in rows:
        if len(fields) != width:
            raise RnnlabError(
                f"{path}: line {line} has {len(fields)} fields, expected {width} like line {first}"
            )
    return rows


# Models compute in float32: a reading beyond its range becomes infinity and training diverges.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def beyond_float32(values: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first value of a 2-D table too large for float32, or None."""
    found = np.argwhere(np.abs(values) > FLOAT32_MAX)
    return (int(found[0][0]), int(found[0][1])) if found.size else None
