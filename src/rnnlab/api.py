"""rnnlab from Python: train a task, load a run, ask it questions, compare cells.

What a notebook calls, and what the command line calls too: ``rnnlab run`` is :func:`train`,
``rnnlab predict`` is :meth:`Run.predict`, ``rnnlab compare`` is :func:`compare`.

Settings are keyword arguments named ``SECTION__KEY`` (two underscores), the ``--set
SECTION.KEY=VALUE`` of the command line: ``train__epochs=5``, ``model__cell="gru"``. An unknown
key is the command line's one-line error, naming the key and the nearest one.

>>> import rnnlab, tempfile
>>> out = tempfile.mkdtemp()
>>> run = rnnlab.train("addition", out=out, data__examples=600, train__epochs=1, quiet=True)
>>> sorted(run.metrics)[:3]
['best_epoch', 'cuda_graphs', 'device']
>>> run.predict(["12+34"])[0]["question"]
'12+34'
>>> rnnlab.load(run.path).config.model.hidden == run.config.model.hidden
True
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from rnnlab.config import Config, Override, read_toml
from rnnlab.errors import RnnlabError
from rnnlab.files import read_json
from rnnlab.runs.compare import columns, parse_cells
from rnnlab.runs.compare import compare as compare_cells
from rnnlab.runs.pipeline import evaluate_run
from rnnlab.runs.pipeline import run as run_task
from rnnlab.runs.restore import restore, task_of
from rnnlab.tasks import get_task
from rnnlab.tasks.base import Task
from rnnlab.training import checkpoint
from rnnlab.training.callbacks import TensorBoard

SECTIONS = ("data", "model", "train")


def settings(overrides: dict[str, Any]) -> list[Override]:
    """``{"train__epochs": 5}`` -> ``[("train", "epochs", 5)]``; a keyword that is not
    ``SECTION__KEY`` is a one-line error naming it.

    >>> settings({"model__hidden": 64, "train__patience": None})
    [('model', 'hidden', 64), ('train', 'patience', None)]
    """
    found: list[Override] = []
    for name, value in overrides.items():
        section, sep, key = name.partition("__")
        if not sep or not key or section not in SECTIONS:
            raise RnnlabError(
                f"setting {name}={value!r}: expected SECTION__KEY=VALUE with SECTION one of "
                f"{', '.join(SECTIONS)} (model__hidden=64 is --set model.hidden=64)"
            )
        found.append((section, key, value))
    return found


def configure(task: str, config: str | Path | None = None, **overrides: Any) -> Config:
    """The settings a run of ``task`` would train with: its packaged config, then the TOML file
    ``config``, then ``overrides`` (``SECTION__KEY=VALUE``), every one checked.

    >>> configure("addition", model__cell="gru").model.cell
    'gru'
    """
    path = None if config is None else Path(config)
    return get_task(task).config(path, settings(overrides))


def train(
    task: str,
    config: str | Path | None = None,
    out: str | Path | None = None,
    *,
    device: str = "auto",
    quiet: bool = False,
    data_dir: str | Path | None = None,
    tensorboard: bool = False,
    **overrides: Any,
) -> Run:
    """Train ``task`` and return its :class:`Run`, as ``rnnlab run`` does.

    ``config``: a TOML file over the task's defaults; ``out``: the run directory (default
    ``runs/TASK/DATE-TIME``); ``overrides``: settings as ``SECTION__KEY=VALUE``. Progress shows
    as bars with an ETA (in a notebook too) unless ``quiet``. Ctrl-C (an interrupted kernel)
    saves a checkpoint; :func:`resume` continues it.
    """
    cfg = configure(task, config, **overrides)
    return fit(cfg, out, device=device, quiet=quiet, data_dir=data_dir, tensorboard=tensorboard)


def resume(
    run_dir: str | Path,
    *,
    device: str = "auto",
    quiet: bool = False,
    data_dir: str | Path | None = None,
    tensorboard: bool = False,
) -> Run:
    """Continue an interrupted run from its last checkpoint (``rnnlab run TASK --resume``); a
    finished run is returned as it is."""
    path = Path(run_dir)
    cfg = resumable(path)
    if cfg is None:
        return Run(path, device)
    return fit(
        cfg, path, device=device, quiet=quiet, data_dir=data_dir, tensorboard=tensorboard,
        resume=True,
    )  # fmt: skip


def resumable(path: Path) -> Config | None:
    """The config an interrupted run in ``path`` continues with; None for a finished run. A
    folder that holds no run, or no checkpoint yet, is a one-line error saying what to do."""
    if not path.is_dir():
        what = "no such folder" if not path.exists() else "a file, not a folder"
        raise RnnlabError(
            f"--resume {path}: {what}; expected the folder of a run that `rnnlab run` wrote"
        )
    if (path / "metrics.json").exists():
        return None
    if not checkpoint.exists(path / "last"):
        raise RnnlabError(
            f"--resume {path}: no checkpoint in {path / 'last'} (a run saves one after its first "
            f"epoch; one stopped before has nothing to resume: remove {path})"
        )
    recorded = read_toml(path / "config.toml").get("task")
    return get_task(str(recorded)).config(path / "config.toml")


def fit(
    cfg: Config,
    out: str | Path | None = None,
    *,
    device: str = "auto",
    quiet: bool = False,
    data_dir: str | Path | None = None,
    tensorboard: bool = False,
    resume: bool = False,
) -> Run:
    """Train a task's ready :class:`~rnnlab.config.Config` (from :func:`configure`)."""
    target = None if out is None else Path(out)
    extra: tuple[TensorBoard, ...] = ()
    if tensorboard:
        extra = (TensorBoard(str((target or Path("runs") / cfg.task) / "tensorboard")),)
    run_dir = run_task(
        get_task(cfg.task),
        cfg,
        target,
        device,
        quiet,
        None if data_dir is None else Path(data_dir),
        extra,
        Console(stderr=True, quiet=quiet),
        resume=resume,
    )
    return Run(run_dir, device)


def load(run_dir: str | Path, device: str = "auto") -> Run:
    """A finished run read back from its directory (no data needed to predict).

    >>> load("no/such/run")
    Traceback (most recent call last):
    ...
    rnnlab.errors.RnnlabError: no/such/run: no such run directory
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RnnlabError(f"{path}: no such run directory")
    return Run(path, device)


class Run:
    """A trained run: its directory, settings, metrics, history and model.

    ``path`` is the run directory; the model is read from it the first time it is needed.
    """

    def __init__(self, path: Path, device: str = "auto") -> None:
        self.path = path
        self.device = device
        self._restored: tuple[Task, Any] | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, task={self.task!r})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{key}</td><td>{value:.4g}</td></tr>"
            for key, value in self.metrics.items()
            if key.startswith("test_") and isinstance(value, float)
        )
        return f"<b>{self.task}</b> run <code>{self.path}</code><table>{rows}</table>"

    @property
    def task(self) -> str:
        """The task's name."""
        return task_of(self.path).name

    @property
    def config(self) -> Config:
        """The settings the run trained with (its ``config.toml``)."""
        return task_of(self.path).config(self.path / "config.toml")

    @property
    def metrics(self) -> dict[str, Any]:
        """Its test metrics and facts of its training (``metrics.json``)."""
        found: dict[str, Any] = read_json(self.path / "metrics.json", "finished run")
        return found

    @property
    def history(self) -> Any:
        """One row per epoch (``history.csv``): a pandas DataFrame where pandas is installed,
        else a list of dicts."""
        with open(self.path / "history.csv", newline="") as f:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        for row in rows:
            row["epoch"] = int(row["epoch"])
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows).set_index("epoch")

    @property
    def learned(self) -> bool | None:
        """Whether the run beat its task's trivial baseline (None: the task has none)."""
        value = self.metrics.get("learned")
        return None if value is None else bool(value)

    def _model(self) -> tuple[Task, Any]:
        if self._restored is None:
            self._restored = restore(task_of(self.path), self.path, self.device)
        return self._restored

    def evaluate(self, data_dir: str | Path | None = None) -> dict[str, float]:
        """The test metrics recomputed from the saved model and the run's data."""
        return evaluate_run(self.path, self.device, None if data_dir is None else Path(data_dir))

    def predict(self, inputs: Sequence[Any] | np.ndarray) -> list[dict[str, Any]]:
        """Answers to new inputs, one dict per answer, as ``rnnlab predict`` prints them.

        ``inputs``: texts (sentiment, text classification), questions (addition, seq2seq),
        series as an array of shape (series, steps) or (series, steps, features) or file names
        (the series classifiers), readings as an array of shape (rows, columns) or CSV file names
        (air quality, forecasts).
        """
        task, model = self._model()
        if isinstance(inputs, np.ndarray):
            return task.predict_array(model, inputs)
        if isinstance(inputs, str):
            inputs = [inputs]
        return task.predict(model, [str(i) for i in inputs])

    def generate(
        self,
        prime: str | None = None,
        temperature: float = 0.5,
        length: int = 400,
        lines: int | None = None,
        top_k: int | None = None,
        seed: int = 0,
    ) -> str:
        """Text written by a text-generation run, continuing ``prime`` (random if None)."""
        from rnnlab.tasks.sampling import check_options
        from rnnlab.tasks.text_generation import TextGeneration

        task, model = self._model()
        if not isinstance(task, TextGeneration):
            raise RnnlabError(
                f"{self.path}: a {self.task} run; generate needs a text-generation run"
            )
        check_options([temperature], length, lines, top_k)
        (sample,) = task.samples(
            model, prime, temperatures=[temperature], length=length, lines=lines, top_k=top_k,
            seed=seed,
        )  # fmt: skip
        return (prime or "") + sample.text

    @property
    def plots(self) -> list[Path]:
        """The run's figures (PNG files)."""
        return sorted(self.path.glob("*.png"))

    def plot(self) -> list[Path]:
        """Show the run's figures (inline in a notebook); returns their files."""
        show(self.plots)
        return self.plots


def show(paths: Sequence[Path]) -> None:
    """Each PNG inline in a notebook (IPython's display); elsewhere nothing to do."""
    try:
        from IPython.display import Image, display
    except ImportError:
        return
    for path in paths:
        display(Image(filename=str(path)))


@dataclass
class Study:
    """Runs of one task with several cells and seeds: ``summary`` maps each metric to its
    ``mean ± std`` per cell; ``path`` holds ``compare.md``, ``compare.csv`` and ``curves.png``."""

    path: Path
    task: str
    cells: list[str]
    summary: dict[str, dict[str, str]]

    @property
    def runs(self) -> list[Run]:
        """Every run of the study."""
        return [Run(d.parent) for d in sorted(self.path.glob("*/metrics.json"))]

    def table(self) -> Any:
        """The summary: a pandas DataFrame (metrics × cells) where pandas is installed, else
        the markdown table of ``compare.md``."""
        try:
            import pandas as pd
        except ImportError:
            return (self.path / "compare.md").read_text()
        shown = columns(self.cells, self.summary)
        return pd.DataFrame(
            [[row.get(c, "") for c in shown] for row in self.summary.values()],
            index=list(self.summary),
            columns=shown,
        )

    def _repr_markdown_(self) -> str:
        return (self.path / "compare.md").read_text()

    def plot(self) -> list[Path]:
        """Show the study's learning curves (inline in a notebook); returns the file."""
        paths = [self.path / "curves.png"]
        show(paths)
        return paths


def compare(
    task: str,
    cells: Sequence[str] | str | None = None,
    seeds: int = 3,
    config: str | Path | None = None,
    out: str | Path | None = None,
    *,
    device: str = "auto",
    quiet: bool = False,
    data_dir: str | Path | None = None,
    **overrides: Any,
) -> Study:
    """Train ``task`` with each of ``cells`` (default: every cell of the registry) and ``seeds``
    seeds each, as ``rnnlab compare`` does; returns the :class:`Study`."""
    chosen = parse_cells(cells if cells is None or isinstance(cells, str) else ",".join(cells))
    folder, summary = compare_cells(
        task,
        chosen,
        seeds,
        settings(overrides),
        None if config is None else Path(config),
        None if out is None else Path(out),
        device,
        None if data_dir is None else Path(data_dir),
        quiet,
    )
    return Study(folder, task, chosen, summary)
