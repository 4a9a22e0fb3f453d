"""Tiny slices of the lab's datasets, written under a test's tmp_path (the originals stay read-only)."""

from __future__ import annotations

import csv
from pathlib import Path

from rnnlab.data.registry import fetch

VERSE = "merry are the bells,\nand merry would they ring;\n"


def ucr_slice(shared_data: Path, tmp_path: Path, rows: int) -> tuple[str, str]:
    """About ``rows`` evenly spaced rows of each ElectricDevices split (every class stays in)."""
    paths = []
    sources = fetch("electric-devices", shared_data).values()
    for split, source in zip(("TRAIN", "TEST"), sources, strict=True):
        lines = source.read_text().splitlines()
        path = tmp_path / f"ED_{split}{source.suffix}"
        path.write_text("\n".join(lines[:: max(1, len(lines) // rows)]) + "\n")
        paths.append(str(path))
    return paths[0], paths[1]


def tweets_slice(shared_data: Path, tmp_path: Path, rows: int) -> str:
    """The first ``rows`` tweets of the airline CSV (read as CSV: some tweets span lines)."""
    with open(shared_data / "Airlines.csv", newline="", encoding="utf-8") as f:
        records = list(csv.reader(f))[: rows + 1]
    path = tmp_path / "tweets.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(records)
    return str(path)


def verse_file(tmp_path: Path, repeats: int = 40) -> str:
    """A short repeated verse: a text-generation corpus that trains in a blink."""
    path = tmp_path / "verse.txt"
    path.write_text(VERSE * repeats, encoding="utf-8")
    return str(path)
