"""The lab report: the five tasks in one go, set against the lab's Keras figures and the trivial
baselines, as ``report.md`` and a self-contained ``report.html`` (images inlined: it opens from
disk with no server and no network).

The runs go through the tasks' own configs and :func:`rnnlab.compare.run_series`; ``--quick``
trains fewer epochs so the whole lab takes a few minutes.
"""

from __future__ import annotations

import base64
import html
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import rnnlab
from rnnlab.config import parse_override
from rnnlab.errors import RnnlabError
from rnnlab.files import write_text
from rnnlab.runs.compare import Planned, load_plan, run_series, save_plan
from rnnlab.runs.rundir import new_run_dir
from rnnlab.tasks import get_task


@dataclass(frozen=True)
class Reference:
    """What the lab's Keras script reached on a task, and which ``metrics.json`` keys to set
    beside it: the comparable metric and the trivial baseline."""

    metric: str
    label: str
    keras: float
    keras_time: str
    keras_seconds: (
        float  # the same wall time as a number (text generation: 100 epochs, no sampling)
    )
    baseline: str
    baseline_label: str
    note: str = ""


# The lab's Keras scripts on the 2-core CPU (from the issues), one row per task, in the lab's order.
KERAS = {
    "air-quality": Reference(
        "test_r2", "test R²", 0.795, "12.2 s", 12.2, "persistence_r2", "persistence",
        "the lab's persistence: 0.764",
    ),
    "electric-devices": Reference(
        "test_accuracy", "test accuracy", 0.545, "119 s", 119.0, "majority_accuracy", "majority class"
    ),
    "sentiment": Reference(
        "test_accuracy", "test accuracy", 0.808, "58.6 s", 58.6, "majority_accuracy", "majority class",
        "Keras: on the lab's ordered split, `--set sentiment:data.split='ordered'`",
    ),
    "text-generation": Reference(
        "val_bpc", "validation bits per character (lower is better)", 2.856,
        "2.7–3.2 s/epoch (about 24 min with sampling, 10 rounds)", 2.95 * 100, "unigram_bpc",
        "character frequencies",
    ),
    "addition": Reference(
        "test_exact_match", "test exact match", 0.996, "182 s", 182.0, "majority_exact_match",
        "most frequent answer", "Keras: validation exact match",
    ),
}  # fmt: skip

# The metrics' names in the terminal's table (report.md and report.html give them in full).
BRIEF = {
    "test_r2": "R²",
    "test_accuracy": "accuracy",
    "val_bpc": "bits/char ↓",
    "test_exact_match": "exact match",
}

# ``--quick``: the lab's settings with fewer epochs, a few minutes for all five on a 2-core CPU.
QUICK = {
    "air-quality": ("train.epochs=10",),
    "electric-devices": ("train.epochs=5",),
    "sentiment": ("train.epochs=10",),
    "text-generation": ("train.epochs=3",),
    "addition": ("train.epochs=5",),
}

FIGURES = ("learning_curves.png", "predictions.png", "confusion.png", "attention.png")


def task_overrides(texts: Sequence[str]) -> dict[str, list[str]]:
    """``--set [TASK:]SECTION.KEY=VALUE`` -> overrides per task: a plain one goes to every task."""
    found: dict[str, list[str]] = {name: [] for name in KERAS}
    for text in texts:
        key, _, _ = text.partition("=")
        task, colon, _ = key.partition(":")
        if not colon:
            for name in found:
                found[name].append(text)
            continue
        if task not in found:
            raise RnnlabError(
                f"--set {text!r}: the lab's tasks are {', '.join(KERAS)}, not {task!r}"
            )
        setting = text[len(task) + 1 :]
        parse_override(setting)  # a malformed one fails here, naming itself
        found[task].append(setting)
    return found


@dataclass
class Result:
    """One task's run: where it is and what it measured."""

    task: str
    run_dir: Path
    metrics: dict[str, Any]


def lab(
    out: Path | None = None,
    quick: bool = False,
    overrides: Sequence[str] = (),
    device: str = "auto",
    data_dir: Path | None = None,
    quiet: bool = False,
) -> tuple[Path, Report]:
    """Run the five tasks and write ``report.md`` and ``report.html``; returns the folder and
    the report."""
    per_task = task_overrides(overrides)
    configs = {  # every config checked before anything is written or trained
        name: get_task(name).config(None, [*(QUICK[name] if quick else ()), *per_task[name]])
        for name in KERAS
    }
    out = new_run_dir("lab", out)
    planned = [Planned(name, get_task(name), cfg, out / name) for name, cfg in configs.items()]
    setting = (
        "quick (`rnnlab lab --quick`): fewer epochs than the lab, so the metrics fall short of it"
        if quick
        else "the lab's (`rnnlab lab`)"
    )
    if overrides:
        setting += ", with " + ", ".join(f"`--set {s}`" for s in overrides)
    save_plan(out, planned, {"command": "lab", "setting": setting})
    return out, _report(out, planned, setting, device, data_dir, quiet)


def resume_lab(
    folder: Path, device: str = "auto", data_dir: Path | None = None, quiet: bool = False
) -> tuple[Path, Report]:
    """Continue the lab report in ``folder`` (written by :func:`lab`) where it stopped."""
    planned, study = load_plan(folder, "lab")
    return folder, _report(folder, planned, study["setting"], device, data_dir, quiet)


def _report(
    out: Path,
    planned: Sequence[Planned],
    setting: str,
    device: str,
    data_dir: Path | None,
    quiet: bool,
) -> Report:
    run_dirs = run_series(
        planned, device, data_dir, quiet, resume_hint=f"rnnlab lab --resume {out}"
    )
    results = [
        Result(p.label, d, json.loads((d / "metrics.json").read_text()))
        for p, d in zip(planned, run_dirs, strict=True)
    ]
    report = Report(results, setting)
    write_text(out / "report.md", report.markdown(out))
    write_text(out / "report.html", report.html(out))
    return report


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Report:
    """The report's content, written as Markdown (images linked) or HTML (images inlined)."""

    columns = ("task", "metric", "rnnlab", "baseline", "Keras (lab)", "rnnlab time", "Keras time")
    brief_columns = ("task", "metric", "rnnlab", "baseline", "Keras", "s (Keras s)")

    def __init__(self, results: list[Result], setting: str) -> None:
        self.results, self.setting = results, setting
        device = results[0].metrics.get("device", "?")
        self.facts = [
            f"Settings: {setting}.",
            f"rnnlab {rnnlab.__version__}, PyTorch {torch.__version__}, on {device} "
            f"({platform.machine()}, {torch.get_num_threads()} threads), "
            f"{time.strftime('%Y-%m-%d %H:%M')}.",
            "Keras: the lab's own scripts on a 2-core CPU. rnnlab time: training only "
            "(`train_seconds`), evaluation and plots aside.",
        ]

    def rows(self, brief: bool = False) -> list[list[str]]:
        """One row per task: the metric beside its baseline and Keras's figure, then the times.

        ``brief``: the same figures without their notes (``brief_columns``), narrow enough for an
        80-column terminal.
        """
        rows = []
        for r in self.results:
            ref, m = KERAS[r.task], r.metrics
            metric, baseline = _number(m.get(ref.metric, "—")), _number(m.get(ref.baseline, "—"))
            if brief:
                rows.append(
                    [
                        r.task,
                        BRIEF.get(ref.metric, ref.label),
                        metric,
                        baseline,
                        f"{ref.keras:.4g}",
                        f"{m['train_seconds']:.1f} ({ref.keras_seconds:.4g})",
                    ]
                )
                continue
            per_epoch = m["train_seconds"] / max(m["epochs"], 1)
            keras = f"{ref.keras:.4g}" + (f" ({ref.note})" if ref.note else "")
            rows.append(
                [
                    r.task,
                    ref.label,
                    metric,
                    f"{baseline} ({ref.baseline_label})",
                    keras,
                    f"{m['train_seconds']:.1f} s ({m['epochs']} epoch"
                    f"{'' if m['epochs'] == 1 else 's'}, {per_epoch:.2f} s/epoch)",
                    ref.keras_time,
                ]
            )
        return rows

    def figures(self, r: Result) -> list[Path]:
        return [r.run_dir / name for name in FIGURES if (r.run_dir / name).is_file()]

    def markdown(self, out: Path) -> str:
        lines = ["# rnnlab: the lab's five tasks", ""]
        lines += [line for fact in self.facts for line in (fact, "")]
        lines += ["| " + " | ".join(self.columns) + " |", "|---" * len(self.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        for r in self.results:
            lines += ["", f"## {r.task}", "", f"Run directory: `{r.run_dir.relative_to(out)}`", ""]
            lines += [
                f"![{r.task}: {p.stem}]({p.relative_to(out).as_posix()})" for p in self.figures(r)
            ]
        return "\n".join(lines) + "\n"

    def html(self, out: Path) -> str:
        e = html.escape
        head = "".join(f"<th>{e(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>\n"
            for row in self.rows()
        )
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            '<head><meta charset="utf-8"/><title>rnnlab: the lab report</title>',
            f"<style>{_STYLE}</style></head>",
            "<body>",
            "<h1>rnnlab: the lab's five tasks</h1>",
            *(f"<p>{e(fact.replace('`', ''))}</p>" for fact in self.facts),
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>",
        ]
        for r in self.results:
            parts += [
                f"<h2>{e(r.task)}</h2>",
                f"<p>Run directory: <code>{e(str(r.run_dir.relative_to(out)))}</code></p>",
            ]
            for path in self.figures(r):
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{e(r.task)}: {e(path.stem)}" '
                    f'src="data:image/png;base64,{data}"/>'
                    f"<figcaption>{e(path.name)}</figcaption></figure>"
                )
        parts += ["</body>", "</html>"]
        return "\n".join(parts) + "\n"


_STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;"
    "text-align:left}img{max-width:100%}figure{margin:1em 0}"
)
