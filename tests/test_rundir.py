"""Files of a run directory: written whole, readable by others as any new file, errors naming them."""

from __future__ import annotations

import json
import stat

import pytest

from rnnlab.errors import RnnlabError
from rnnlab.files import write_csv, write_json, write_text
from rnnlab.runs.rundir import new_run_dir


def test_written_files_have_the_permissions_of_any_new_file(tmp_path):
    write_text(tmp_path / "atomic.txt", "x")  # through a private temporary file
    (tmp_path / "plain.txt").write_text("x")
    modes = {stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("atomic.txt", "plain.txt")}
    assert len(modes) == 1, modes


def test_a_refused_write_names_the_file_asked_for(tmp_path):
    with pytest.raises(IsADirectoryError) as refused:
        write_json(tmp_path, {"a": 1})
    assert refused.value.filename == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_new_run_needs_an_empty_or_new_directory(tmp_path):
    assert new_run_dir("t", tmp_path / "new") == tmp_path / "new"
    assert new_run_dir("t", tmp_path / "new") == tmp_path / "new"  # empty: fine
    (tmp_path / "new" / "config.toml").write_text("")
    with pytest.raises(RnnlabError, match="not empty"):
        new_run_dir("t", tmp_path / "new")


def test_json_is_strict_and_csv_lines_end_in_newline(tmp_path):
    write_json(tmp_path / "m.json", {"test_r2": float("nan"), "rows": [1.0, float("inf")]})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text, parse_constant=pytest.fail) == {"test_r2": None, "rows": [1.0, None]}
    write_csv(tmp_path / "h.csv", [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
    assert (tmp_path / "h.csv").read_bytes() == b"epoch,loss\n1,0.5\n2,0.25\n"
