"""The notebooks: committed without outputs, and each runs top to bottom and shows its plots.

Every notebook is executed here as a student runs it (a fresh kernel, top to bottom) with the
small settings ``RNNLAB_QUICK=1`` selects, on the lab's files of the tests' data folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook_for_every_lab_task_and_the_lecture():
    names = {p.stem.split("-", 1)[1] for p in NOTEBOOKS}
    lab = {"air-quality", "electric-devices", "sentiment", "text-generation", "addition"}
    assert names == lab | {"lecture-ideas"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (path.name, cell.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_runs_top_to_bottom_and_shows_a_plot(path, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLAB_QUICK", "1")
    monkeypatch.setenv("RNNLAB_DATA", str(shared_data))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    seconds = time.perf_counter() - started
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{path.name} ran in {seconds:.0f} s but showed no plot"
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors
