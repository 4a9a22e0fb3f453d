"""The ``rnnlab`` command line (typer), a thin layer over :mod:`rnnlab.runs`: ``rnnlab --help``
lists every command.

Each command imports what it runs inside its body: ``rnnlab --help`` and ``rnnlab data list`` start
without importing torch.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.exceptions import TyperException

from rnnlab import __version__
from rnnlab.cli.data import data_app
from rnnlab.display import progress_bars
from rnnlab.errors import RnnlabError
from rnnlab.schema import INT_LIMIT

app = typer.Typer(
    help="Recurrent neural networks as the lecture writes them; the lab's tasks in one command.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Results name the user's paths and echo their texts: printed as they are, never read as markup.
out = Console(markup=False)
err = Console(stderr=True)

DataDir = typer.Option(
    None, "--data-dir", help="Where datasets live (default: $RNNLAB_DATA, else the user cache)."
)
Device = typer.Option("auto", "--device", help="auto, cpu or cuda.")
Quiet = typer.Option(False, "--quiet", help="No progress display.")
Procs = typer.Option(
    1,
    "--procs",
    help="Train in this many data-parallel processes (torchrun's engine; CPU cores split).",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rnnlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """rnnlab: RNN, LSTM and GRU models, their training, and the lab's five tasks."""


def _metrics_table(title: str, metrics: dict) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, dict):  # not_learned: said after the table
            continue
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    return table


@app.command()
def tasks() -> None:
    """List the tasks that rnnlab run knows."""
    from rnnlab.tasks import TASKS

    table = Table(show_header=True, header_style="bold")
    table.add_column("task")
    table.add_column("what it is")
    for name, task in TASKS.items():
        table.add_row(name, task.summary)
    out.print(table)


@app.command()
def cells() -> None:
    """List the recurrent cells of the registry: what each is, its state, gates and engines."""
    from rnnlab.nn import CELLS

    table = Table(show_header=True, header_style="bold")
    for column in ("cell", "what it is", "state", "gates", "engines"):
        table.add_column(column, overflow="fold")
    for spec in CELLS.values():
        engines = "fused, reference" if spec.fused is not None else "reference"
        table.add_row(
            spec.name, spec.summary, ", ".join(spec.state), ", ".join(spec.gates) or "-", engines
        )
    out.print(table)


def _alone_with_resume(kind: str, options: dict[str, Any]) -> None:
    """``--resume`` continues a ``kind`` as it was planned: an option that would change it is an
    error naming it."""
    given = [name for name, value in options.items() if value not in (None, False, [])]
    if given:
        raise RnnlabError(f"--resume continues a {kind} as it was planned; drop {', '.join(given)}")


@app.command()
def run(
    task: str = typer.Argument(..., help="Task name; see `rnnlab tasks`."),
    config: Path | None = typer.Option(None, "--config", help="A TOML file over the defaults."),
    set_: list[str] = typer.Option(
        [], "--set", metavar="K=V", help="Override one key: --set train.epochs=5."
    ),
    out_dir: Path | None = typer.Option(None, "--out", help="Run directory (default runs/TASK/…)."),
    device: str = Device,
    quiet: bool = Quiet,
    data_dir: Path | None = DataDir,
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Write TensorBoard events."),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the run in this directory from its last checkpoint."
    ),
    procs: int = Procs,
) -> None:
    """Train a task and write its run directory (config, history, metrics, model, plots).

    Ctrl-C (or SIGTERM) saves a checkpoint; `--resume RUN_DIR` continues from it.
    """
    from rnnlab import api
    from rnnlab.tasks import get_task
    from rnnlab.training.device import resolve_device
    from rnnlab.training.distributed import is_main_process, relaunch

    task_cls = get_task(task)
    if resume is not None:
        _alone_with_resume("run", {"--config": config, "--set": set_})
        resumed = api.resumable(resume)
        if resumed is None:
            err.print(
                f"{resume}: finished already (metrics.json); nothing to resume. "
                f"`rnnlab eval {resume}` recomputes its test metrics",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
            out.print(f"run directory: {resume}")
            return
        if resumed.task != task:
            raise RnnlabError(
                f"{resume / 'config.toml'}: is a config for task {resumed.task!r}, not {task!r}"
            )
    else:
        cfg = task_cls.config(config, set_)  # with --procs, a bad config fails here, once
    if procs != 1:
        relaunch(procs, str(resolve_device(device)))
        return
    if resume is not None:
        run_dir = api.resume(
            resume, device=device, quiet=quiet, data_dir=data_dir, tensorboard=tensorboard
        ).path
    else:
        trained = api.fit(
            cfg, out_dir, device=device, quiet=quiet, data_dir=data_dir, tensorboard=tensorboard
        )
        run_dir = trained.path
    if not is_main_process():  # under torchrun, rank 0 reports
        return
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if not quiet:
        out.print(_metrics_table(f"{task}: test metrics", metrics))
    out.print(f"run directory: {run_dir}")
    _warn_if_not_learned(metrics)


def _warn_if_not_learned(metrics: dict[str, Any]) -> None:
    """A run that did not beat its trivial baseline says so last, with what to try, even --quiet."""
    found = metrics.get("not_learned")
    if not isinstance(found, dict):
        return
    err.print(f"[yellow]warning:[/] {escape(found['message'])}", soft_wrap=True)
    for label, key in (("likely causes", "causes"), ("to try", "try")):
        if found.get(key):
            err.print(f"  {label}: " + "; ".join(map(escape, found[key])), soft_wrap=True)


@app.command("eval")
def eval_(
    run_dirs: list[Path] = typer.Argument(
        ..., help="Run directories written by `rnnlab run`; several: also their ensemble."
    ),
    device: str = Device,
    data_dir: Path | None = DataDir,
    json_out: Path | None = typer.Option(
        None, "--json", help="Also write the metrics here (JSON)."
    ),
) -> None:
    """Recompute a run's test metrics from its saved model; of several runs, and their ensemble.

    The ensemble averages the runs' class probabilities (classifiers) or predicted values
    (regression); the runs must share their task and test set, e.g. one config with other seeds.
    """
    from rnnlab.files import write_json
    from rnnlab.runs.ensemble import evaluate_ensemble
    from rnnlab.runs.pipeline import evaluate_run

    if len(run_dirs) == 1:
        metrics = evaluate_run(run_dirs[0], device, data_dir)
        out.print(_metrics_table(f"{run_dirs[0]}: test metrics", metrics))
        result: dict = metrics
    else:
        members, ensemble = evaluate_ensemble(run_dirs, device, data_dir)
        table = Table(
            title=f"test metrics of {len(run_dirs)} runs and their ensemble",
            header_style="bold",
            box=None,  # no rules: room for more runs in 80 columns
        )
        table.add_column("metric", overflow="fold")
        names = [d.name for d in run_dirs]  # the folders' own names, when they tell them apart
        names = names if len(set(names)) == len(names) else list(map(str, run_dirs))
        rows = {key: [f"{m[key]:.4g}" for m in [*members, ensemble]] for key in ensemble}
        digits = max(len(v) for values in rows.values() for v in values)
        # Too wide for the terminal with every name in the header: number the runs, list them below.
        widths = [max(map(len, rows)), *(max(len(n), digits) for n in names), len("ensemble")]
        numbered = sum(widths) + 2 * len(widths) > out.width  # each column padded by 1 a side
        for k, name in enumerate(names, 1):
            header = f"#{k}" if numbered else name
            table.add_column(header, justify="right", no_wrap=True, min_width=digits)
        table.add_column("ensemble", justify="right", style="bold", no_wrap=True)
        for key, values in rows.items():
            table.add_row(key, *values)
        out.print(table)
        if numbered:
            out.print("\n".join(f"#{k}: {d}" for k, d in enumerate(run_dirs, 1)), soft_wrap=True)
        result = {"runs": dict(zip(map(str, run_dirs), members, strict=True)), "ensemble": ensemble}
    if json_out is not None:
        write_json(json_out, result)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `rnnlab run`."),
    inputs: list[str] = typer.Argument(
        ...,
        help="Texts (sentiment), questions (addition, seq2seq), UCR files (electric-devices) or "
        "CSVs of readings (air-quality).",
    ),
    device: str = Device,
    csv_out: Path | None = typer.Option(
        None, "--csv", help="Write the answers here (CSV, full precision) instead of a table."
    ),
) -> None:
    """Answer new inputs with a trained model: one table row per answer."""
    from rnnlab import api
    from rnnlab.files import write_csv

    rows = api.load(run_dir, device).predict(inputs)
    if csv_out is not None:
        write_csv(csv_out, rows)
        out.print(f"{len(rows)} answers written to {csv_out}")
        return
    table = Table(show_header=True, header_style="bold")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*map(_cell, row.values()))
    out.print(table)


def _cell(value: object) -> Text:
    """A table cell: floats to 3 digits, an empty answer shown as such (not a blank)."""
    if value == "":
        return Text("(nothing)", style="dim")
    return Text(f"{value:.3f}" if isinstance(value, float) else str(value))


@app.command()
def generate(
    run_dir: Path = typer.Argument(..., help="A text-generation run directory."),
    prime: str | None = typer.Option(
        None, "--prime", help="Text to continue (default: random characters, as the lab)."
    ),
    temperature: list[float] = typer.Option(
        [0.5], "--temperature", help="Sampling temperature, repeatable; 0 is greedy."
    ),
    length: int = typer.Option(
        1000, "--length", help="At most this many new characters (up to 1,000,000)."
    ),
    lines: int | None = typer.Option(None, "--lines", help="Stop after this many lines."),
    top_k: int | None = typer.Option(None, "--top-k", help="Sample among the k likeliest only."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=INT_LIMIT, help="Seeds the random prime and every draw."
    ),
    device: str = Device,
) -> None:
    """Write text with a trained character model, one text per temperature."""
    from rnnlab.runs.restore import restore, task_of
    from rnnlab.tasks.sampling import check_options
    from rnnlab.tasks.text_generation import TextGeneration

    task_cls = task_of(run_dir)
    if task_cls is not TextGeneration:
        raise RnnlabError(
            f"{run_dir}: holds a model of task {task_cls.name!r}; generate needs a text-generation run"
        )
    check_options(temperature, length, lines, top_k)
    task, model = restore(task_cls, run_dir, device)
    assert isinstance(task, TextGeneration)  # task_of said so
    progress = progress_bars(err, "generating", info=None, disable=not err.is_terminal)
    with progress:
        bar = progress.add_task("", total=length)
        samples = task.samples(
            model,
            prime,
            temperatures=temperature,
            length=length,
            lines=lines,
            top_k=top_k,
            seed=seed,
            progress=lambda done, total: progress.update(bar, completed=done),
        )
    for sample in samples:
        err.print(f"[bold]--- temperature {sample.temperature:g}[/]")
        # A prime of the user's reads on into its continuation; a random one is noise, as the lab.
        typer.echo((sample.prime if prime is not None else "") + sample.text)


@app.command()
def compare(
    task: str = typer.Argument(..., help="Task name; see `rnnlab tasks`."),
    cells: str | None = typer.Option(
        None,
        "--cells",
        help="Comma-separated cells to compare (default: every cell; `rnnlab cells` lists them).",
    ),
    seeds: int | None = typer.Option(
        None, "--seeds", help="Runs per cell, seeds counting up from train.seed (default 3)."
    ),
    config: Path | None = typer.Option(None, "--config", help="A TOML file over the defaults."),
    set_: list[str] = typer.Option(
        [], "--set", metavar="K=V", help="Override one key for every run."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Study directory (default runs/compare/TASK/…)."
    ),
    device: str = Device,
    quiet: bool = Quiet,
    data_dir: Path | None = DataDir,
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the study in this directory where it stopped."
    ),
    procs: int = Procs,
) -> None:
    """Train every cell on a task with a few seeds each: compare.csv, compare.md, curves.png.

    Ctrl-C (or SIGTERM) saves the current run's checkpoint; `--resume STUDY_DIR` keeps the
    finished runs, continues that one and trains the rest.
    """
    from rnnlab.runs.compare import columns, parse_cells, resume_compare
    from rnnlab.runs.compare import compare as compare_cells
    from rnnlab.tasks import get_task
    from rnnlab.training.device import resolve_device
    from rnnlab.training.distributed import is_main_process, relaunch

    if resume is not None:
        planning = {"--cells": cells, "--seeds": seeds, "--config": config, "--set": set_}
        _alone_with_resume("study", planning | {"--out": out_dir})
    chosen = parse_cells(cells)
    seeds = 3 if seeds is None else seeds
    if resume is None:
        get_task(task).config(config, set_)  # a bad config fails here, once
    if procs != 1:
        relaunch(procs, str(resolve_device(device)))
        return
    if resume is not None:
        folder, summary, study = resume_compare(resume, task, device, data_dir, quiet)
        chosen, seeds = study["cells"], len(study["seeds"])
    else:
        folder, summary = compare_cells(
            task, chosen, seeds, set_, config, out_dir, device, data_dir, quiet
        )
    if not is_main_process():
        return
    table = Table(title=f"{task}: mean ± std over {seeds} seed(s)", header_style="bold")
    table.add_column("metric", no_wrap=True)
    shown = columns(chosen, summary)
    for column in shown:
        table.add_column(column, justify="right")
    for key, by_cell in summary.items():
        table.add_row(key, *(by_cell.get(c, "") for c in shown))
    if not quiet:
        out.print(table)
    out.print(f"study directory: {folder}")


diagnose_app = typer.Typer(
    help="Look inside recurrent models: gradient flow through time, gates.", no_args_is_help=True
)


@diagnose_app.command("gradients")
def diagnose_gradients(
    cells: str | None = typer.Option(
        None, "--cells", help="Comma-separated cells to measure (default: every cell)."
    ),
    length: int = typer.Option(100, "--length", help="Sequence length T of the adding problem."),
    steps: int = typer.Option(1500, "--steps", help="Training steps per model (batch 64)."),
    hidden: int = typer.Option(32, "--hidden", help="Units of every model."),
    init: str = typer.Option("keras", "--init", help="keras (the lab's) or torch."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=INT_LIMIT, help="Seeds the data and every model."
    ),
    threads: int = typer.Option(1, "--threads", help="CPU threads (small batches: 1 is fastest)."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Output directory (default runs/diagnose/gradients/…)."
    ),
    quiet: bool = Quiet,
) -> None:
    """‖∂L/∂h_t‖ over t on the adding problem, at init and after training, per cell.

    Writes gradients.csv (per model: the ratio ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at init and trained, the
    MSE reached, the largest gradient norms), gradient_curves.csv and gradients.png. With rnn,
    also a vanilla RNN of spectral radius 2 trained by SGD with and without clipping.
    """

    from rnnlab.runs.compare import parse_cells
    from rnnlab.runs.diagnose import gradient_study
    from rnnlab.runs.rundir import new_run_dir

    if init not in ("keras", "torch"):
        raise RnnlabError(f"--init must be keras or torch, got {init!r}")
    if threads < 1:
        raise RnnlabError(f"--threads must be >= 1, got {threads}")
    chosen = parse_cells(cells)
    folder = new_run_dir("diagnose/gradients", out_dir)
    progress = progress_bars(err, info=None, disable=quiet)
    try:
        with progress:
            bar = progress.add_task("", total=None)

            def follow(model: str, done: int, total: int) -> None:
                progress.update(bar, description=model, completed=done, total=total)

            rows = gradient_study(
                chosen, folder, length, hidden, steps, seed, init, follow, threads
            )
    except RnnlabError:
        with contextlib.suppress(OSError):  # a bad option: no empty output directory left behind
            folder.rmdir()
        raise
    table = Table(
        title=f"adding problem, T = {length}; ratio = ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖; "
        f"the mean's MSE {rows[0]['baseline_mse']:.3f}",
        header_style="bold",
        box=box.SIMPLE_HEAD,  # no vertical rules: the seven columns fit 80 characters
    )
    columns = {
        "model": "model",
        "grad_ratio_init": "ratio\ninit",
        "grad_ratio_trained": "ratio\ntrained",
        "mse_trained": "MSE\ntrained",
        "max_grad_norm": "max grad\nnorm",
        "max_applied_norm": "max\napplied",
        "train_seconds": "s",
    }
    # Wrapped, never cut: the names tell models apart.
    table.add_column("model", overflow="fold", min_width=14)
    for title in list(columns.values())[1:]:
        table.add_column(title, justify="right", no_wrap=True)  # a number is never cut
    for row in rows:
        table.add_row(
            *(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in columns)
        )
    if not quiet:
        out.print(table)
    out.print(f"output directory: {folder}")


@diagnose_app.command("gates")
def diagnose_gates(
    run_dir: Path = typer.Argument(..., help="A text-generation or sentiment run (LSTM or GRU)."),
    text: str = typer.Option(..., "--text", help="The text to run the model over."),
    layer: int = typer.Option(1, "--layer", help="Which layer, from 1 (forward direction)."),
    units: int = typer.Option(32, "--units", help="Show the units that vary most, this many."),
    out_path: Path | None = typer.Option(
        None, "--out", help="The PNG to write (default RUN_DIR/gates.png)."
    ),
    device: str = Device,
) -> None:
    """Heatmaps of every gate (and the LSTM cell state) over the text's characters or words."""
    from rnnlab.runs.diagnose import gate_activations, plot_gates

    if units < 1:
        raise RnnlabError(f"--units must be >= 1, got {units}")
    path = out_path or run_dir / "gates.png"
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise RnnlabError(f"--out {path}: expected a .png, .svg or .pdf file name")
    trace = gate_activations(run_dir, text, layer, device)
    plot_gates(trace, path, units)
    out.print(f"gates of {len(trace.tokens)} tokens: {path}")


@app.command()
def lab(
    quick: bool = typer.Option(
        False, "--quick", help="Fewer epochs: all five tasks in a few minutes."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        metavar="[TASK:]K=V",
        help="[TASK:]SECTION.KEY=VALUE: one key for every task, or for TASK only.",
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Report directory (default runs/lab/…)."
    ),
    device: str = Device,
    quiet: bool = Quiet,
    data_dir: Path | None = DataDir,
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the report in this directory where it stopped."
    ),
) -> None:
    """Run the lab's five tasks and write report.md and a self-contained report.html.

    Ctrl-C (or SIGTERM) saves the current task's checkpoint; `--resume REPORT_DIR` keeps the
    finished tasks, continues that one and runs the rest.
    """
    from rnnlab.runs.report import lab as run_lab
    from rnnlab.runs.report import resume_lab

    if resume is not None:
        _alone_with_resume("report", {"--quick": quick, "--set": set_, "--out": out_dir})
        folder, report = resume_lab(resume, device, data_dir, quiet)
    else:
        folder, report = run_lab(out_dir, quick, set_, device, data_dir, quiet)
    if not quiet:
        table = Table(title="the lab's five tasks (in full: report.md)", header_style="bold")
        for column in report.brief_columns:
            table.add_column(column, no_wrap=True)
        for row in report.rows(brief=True):
            table.add_row(*row)
        out.print(table)
    out.print(f"report: {folder / 'report.html'} (and report.md)")


app.add_typer(data_app, name="data")
app.add_typer(diagnose_app, name="diagnose")


def _one_line_paragraphs(group: typer.Typer) -> None:
    """Give every command its docstring as help with each paragraph on one line.

    typer keeps the line breaks of a docstring's later paragraphs, so the terminal showed the
    source's 100-column lines cut again at its own width: ragged text.
    """
    for info in group.registered_commands:
        doc = inspect.getdoc(info.callback) or ""
        info.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _one_line_paragraphs(sub.typer_instance)


_one_line_paragraphs(app)


def main() -> None:
    """Console entry point: user errors (and usage errors) become one line on stderr, exit 2."""
    try:
        code = app(standalone_mode=False)
    except (RnnlabError, OSError) as error:
        from rnnlab.training.distributed import prints_own_errors, report_failure

        # An OSError is the system refusing a file (an --out under a regular file, a full disk
        # while a checkpoint is written): its path and reason, like any other bad input.
        message = str(error)
        if isinstance(error, OSError) and error.filename is not None:
            message = f"{error.filename}: {error.strerror}"
        report_failure(message)  # for the launcher of `run --procs` or torchrun, if any
        if prints_own_errors():  # the other processes of a run fail alike; one line is enough
            print(f"error: {message}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 2))
    except (MemoryError, RuntimeError) as error:
        # The allocator's refusal (a model or batch too large for this machine) is bad input too;
        # any other RuntimeError is a bug and keeps its traceback.
        text = str(error)
        if not isinstance(error, MemoryError) and "allocate" not in text:
            raise
        reason = text.splitlines()[0] if text else "out of memory"
        print(
            f"error: out of memory ({reason}); lower model.hidden, train.batch_size, "
            f"train.eval_batch_size or the data's size",
            file=sys.stderr,
        )
        sys.exit(2)
    except TyperException as error:  # usage errors: unknown option, missing argument...
        ctx = getattr(error, "ctx", None)
        command = ctx.command_path if ctx is not None else "rnnlab"
        if error.format_message():  # empty: no arguments at all, and the help was just shown
            print(f"error: {command}: {error.format_message()} (see --help)", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    # Outside training (loading data, the final test), typer may also turn Ctrl-C into exit
    # code 130 and return it rather than raise.
    if code == 130:
        print("error: interrupted", file=sys.stderr)
    if isinstance(code, int) and code:
        sys.exit(code)
