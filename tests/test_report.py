"""`rnnlab lab`: all five tasks on tiny slices, a Markdown report and a self-contained HTML one."""

from __future__ import annotations

import base64
import io
import json
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, rnnlab
from slices import tweets_slice, ucr_slice, verse_file

from rnnlab.cli import main
from rnnlab.errors import RnnlabError
from rnnlab.runs.report import KERAS, task_overrides

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory, shared_data) -> Path:
    """`rnnlab lab --quick` with every task cut to a slice and one epoch."""
    root = tmp_path_factory.mktemp("lab")
    train, test = ucr_slice(shared_data, root, 150)
    sets = [
        "train.epochs=1", "model.hidden=8",
        "air-quality:data.train_rows=600", "air-quality:data.test_rows=200",
        f"electric-devices:data.train='{train}'", f"electric-devices:data.test='{test}'",
        "electric-devices:model.layers=1",
        f"sentiment:data.path='{tweets_slice(shared_data, root, 400)}'",
        f"text-generation:data.path='{verse_file(root)}'", "text-generation:data.maxlen=10",
        "text-generation:train.sample_length=10", "text-generation:train.sample_lines=1",
        "addition:data.examples=300", "addition:data.digits=2", "addition:data.test_examples=50",
    ]  # fmt: skip
    out = root / "report"
    args = ["lab", "--quick", "--quiet", "--device", "cpu", "--out", str(out),
            "--data-dir", str(shared_data), *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    threads, argv = torch.get_num_threads(), sys.argv
    sys.argv = ["rnnlab", *args]
    try:
        main()  # the CLI itself; its output is pytest's to capture (capsys is per test)
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
    return out


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if tag == "img":
            self.sources.append(found["src"])
        for key in ("href", "src"):
            if key in found and not found[key].startswith("data:"):
                self.links.append(found[key])


def test_lab_runs_every_task_and_writes_both_reports(lab_dir):
    assert {"report.md", "report.html", *KERAS} <= {p.name for p in lab_dir.iterdir()}
    for task in KERAS:
        assert (lab_dir / task / "metrics.json").is_file()
    md = (lab_dir / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(KERAS)  # the header and one row per task
    for task, ref in KERAS.items():
        row = next(line for line in table if line.startswith(f"| {task} |"))
        assert f"{ref.keras:.4g}" in row and ref.baseline_label in row
    assert "![air-quality: learning_curves](air-quality/learning_curves.png)" in md


def test_html_report_is_well_formed_with_every_image_inlined(lab_dir):
    page = (lab_dir / "report.html").read_text(encoding="utf-8")
    ET.fromstring(page.removeprefix("<!DOCTYPE html>\n"))  # well-formed as XML, too
    parser = _Images()
    parser.feed(page)
    parser.close()
    pngs = sorted(lab_dir.glob("*/*.png"))
    assert len(parser.sources) == len(pngs) >= 5 + 3  # curves, confusion x2, predictions
    for src in parser.sources:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix) :], validate=True).startswith(PNG)
    assert parser.links == []  # nothing fetched from anywhere: no server, no network


def test_metrics_carry_the_trivial_baselines(lab_dir):
    for task, ref in KERAS.items():
        metrics = json.loads((lab_dir / task / "metrics.json").read_text())
        assert ref.metric in metrics and ref.baseline in metrics, task
    text = json.loads((lab_dir / "text-generation" / "metrics.json").read_text())
    assert 0 < text["unigram_bpc"] < 5  # the verse has 17 distinct characters: log2(17) ≈ 4.1
    addition = json.loads((lab_dir / "addition" / "metrics.json").read_text())
    assert 0 <= addition["majority_exact_match"] < 0.2


def test_lab_overrides_go_to_every_task_or_to_the_one_named():
    found = task_overrides(["train.epochs=2", "sentiment:model.hidden=4"])
    assert found["sentiment"] == ["train.epochs=2", "model.hidden=4"]
    assert found["addition"] == ["train.epochs=2"]
    with pytest.raises(RnnlabError, match="seq2seq"):
        task_overrides(["seq2seq:train.epochs=1"])


def test_lab_bad_overrides_are_one_line_errors(capsys, tmp_path):
    code, _, err = rnnlab(capsys, "lab", "--out", str(tmp_path / "r"), "--set", "air:epochs=1")
    assert_one_line_error(code, err, "air:epochs=1", "air-quality")
    code, _, err = rnnlab(capsys, "lab", "--out", str(tmp_path / "r"), "--set", "addition:x=1")
    assert_one_line_error(code, err, "x=1", "SECTION.KEY=VALUE")
    assert not (tmp_path / "r").exists()


def test_lab_resume_keeps_finished_tasks_and_runs_the_rest(capsys, lab_dir, shared_data, tmp_path):
    """A report stopped before its last task: `--resume` trains that one alone."""
    import shutil

    copy = tmp_path / "report"
    shutil.copytree(lab_dir, copy)
    shutil.rmtree(copy / "addition")
    for name in ("report.md", "report.html"):
        (copy / name).unlink()
    kept = (copy / "air-quality" / "metrics.json").read_text()
    threads = torch.get_num_threads()
    try:
        code, _, err = rnnlab(
            capsys, "lab", "--resume", str(copy), "--device", "cpu", "--data-dir", str(shared_data)
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    assert err.count("(finished before)") == len(KERAS) - 1
    assert (copy / "addition" / "metrics.json").is_file() and (copy / "report.html").is_file()
    assert (copy / "air-quality" / "metrics.json").read_text() == kept
    md = (copy / "report.md").read_text()
    assert md.count("\n| ") == len(KERAS) + 1 and "quick" in md


def test_lab_resume_takes_the_report_as_planned(capsys, tmp_path):
    code, _, err = rnnlab(capsys, "lab", "--resume", str(tmp_path), "--quick")
    assert_one_line_error(code, err, "--resume", "drop --quick")


def test_the_terminal_table_fits_80_columns_and_keeps_every_figure(lab_dir):
    from rich.console import Console
    from rich.table import Table

    from rnnlab.runs.report import Report, Result

    results = [
        Result(task, lab_dir / task, json.loads((lab_dir / task / "metrics.json").read_text()))
        for task in KERAS
    ]
    report = Report(results, "quick")
    table = Table(header_style="bold")
    for column in report.brief_columns:
        table.add_column(column, no_wrap=True)
    for row in report.rows(brief=True):
        table.add_row(*row)
    console = Console(width=80, file=io.StringIO())
    console.print(table)
    text = console.file.getvalue()
    assert "…" not in text  # nothing cut
    for row, full in zip(report.rows(brief=True), report.rows(), strict=True):
        assert row[0] == full[0] and row[2] == full[2]  # the task and rnnlab's figure, as in full
        assert all(cell in text for cell in row)
