"""Labelled series from the files people have: UCR tables, CSV of any layout, NumPy arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import raises_one_line

from rnnlab.data.labelled import read_labelled


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_ucr_table_reads_its_labels_as_text_and_its_readings_as_one_feature(tmp_path):
    path = _write(tmp_path, "X_TRAIN.tsv", "1\t0.5\t0.7\t0.1\n-1\t0.2\t0.4\t0.9\n")
    data = read_labelled(path)
    assert data.labels.tolist() == ["1", "-1"]
    assert data.series.shape == (2, 3, 1) and data.series[1, 2, 0] == 0.9
    assert data.filled == 0


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("a;b;c;kind\n1;2;3;up\n3;2;1;down\n", {"label": "kind"}),  # header, semicolons, last
        ("1,2,3,up\n3,2,1,down\n", {"label": -1}),  # no header, commas
        ("up 1 2 3\ndown 3 2 1\n", {}),  # spaces, the label first
        ("kind,a,b,c\nup,1,2,3\ndown,3,2,1\n", {"header": "yes"}),
    ],
)
def test_a_csv_of_any_layout_reads_the_same_series(tmp_path, text, options):
    data = read_labelled(_write(tmp_path, "s.csv", text), **options)
    assert data.labels.tolist() == ["up", "down"]
    np.testing.assert_array_equal(data.series[:, :, 0], [[1, 2, 3], [3, 2, 1]])


def test_missing_readings_are_refused_or_interpolated_and_counted(tmp_path):
    path = _write(tmp_path, "gaps.tsv", "1\t1.0\tNaN\t3.0\n2\t?\t2.0\t\n")
    with raises_one_line(str(path), "series 1, reading 2", "3 in all", "interpolate"):
        read_labelled(path)
    data = read_labelled(path, missing="interpolate")
    np.testing.assert_array_equal(data.series[:, :, 0], [[1, 2, 3], [2, 2, 2]])
    assert data.filled == 3


def test_numpy_arrays_read_as_tables_do(tmp_path):
    x = np.arange(12, dtype=float).reshape(2, 3, 2)
    np.savez(tmp_path / "s.npz", x=x, y=np.array(["a", "b"]))
    data = read_labelled(tmp_path / "s.npz")
    assert data.labels.tolist() == ["a", "b"] and data.series.shape == (2, 3, 2)
    np.save(tmp_path / "t.npy", np.array([[1.0, 0.5, 0.6], [2.0, 0.1, 0.2]]))
    data = read_labelled(tmp_path / "t.npy")
    assert data.labels.tolist() == ["1", "2"] and data.series.shape == (2, 2, 1)


@pytest.mark.parametrize(
    ("name", "content", "options", "words"),
    [
        ("ragged.tsv", "1\t0.5\t0.7\n2\t0.1\n", {}, ["line 2 has 2 fields", "expected 3"]),
        ("word.csv", "1,0.5,0.7\n2,0.1,high\n", {}, ["line 2, column 3", "'high'", "not a number"]),
        ("one.csv", "0.5\n0.7\n", {}, ["single field"]),
        ("empty.csv", "\n\n", {}, ["empty"]),
        ("named.csv", "a,b,c\n1,2,3\n", {"label": "kind"}, ["no column named 'kind'"]),
        ("wide.csv", "1,2,3\n", {"label": 5}, ["data.label", "column 5", "3 columns"]),
        ("nolabel.csv", ",2,3\n1,2,3\n", {}, ["line 1, column 1", "empty label"]),
        ("huge.csv", "1,2,1e300\n2,3,4\n", {}, ["line 1", "1e+300", "range"]),
    ],
)
def test_bad_layouts_are_one_line_errors_naming_the_file_and_row(
    tmp_path, name, content, options, words
):
    path = _write(tmp_path, name, content)
    with raises_one_line(str(path), *words):
        read_labelled(path, **options)


def test_bad_arrays_are_one_line_errors(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((2, 3)))
    with raises_one_line("s.npz", "no array 'y'"):
        read_labelled(tmp_path / "s.npz")
    np.savez(tmp_path / "u.npz", x=np.zeros((2, 3)), y=np.zeros(3))
    with raises_one_line("u.npz", "one label per series"):
        read_labelled(tmp_path / "u.npz")
    np.save(tmp_path / "v.npy", np.zeros(4))
    with raises_one_line("v.npy", "(N, 1 + T)"):
        read_labelled(tmp_path / "v.npy")
