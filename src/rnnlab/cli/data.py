"""``rnnlab data``: list the registered datasets, fetch them, show where they live."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rnnlab.data import registry
from rnnlab.errors import RnnlabError

data_app = typer.Typer(
    help="The lab's datasets: list, fetch, where they live.", no_args_is_help=True
)

DataDir = typer.Option(
    None, "--data-dir", help="Data directory (default: $RNNLAB_DATA, else the user cache dir)."
)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


@data_app.command("list")
def list_datasets(data_dir: Path | None = DataDir) -> None:
    """Every registered dataset, its files, and whether they are in the data directory."""
    directory = registry.data_dir(data_dir)
    table = Table(title=f"datasets in {directory}")
    for column in ("name", "task", "files", "size", "present"):
        # A file's name folds onto a second line rather than losing its end (_TRAIN, _TEST).
        table.add_column(column, overflow="fold" if column == "files" else "ellipsis")
    for ds in registry.DATASETS.values():
        local = [registry.local_file(f, directory) for f in ds.files]
        sizes = [p.stat().st_size if p else f.size for p, f in zip(local, ds.files, strict=True)]
        known = None if None in sizes else sum(s for s in sizes if s is not None)
        found = sum(p is not None for p in local)
        present = "yes" if found == len(local) else "no" if found == 0 else f"{found}/{len(local)}"
        files = "\n".join(p.name if p else f.name for p, f in zip(local, ds.files, strict=True))
        table.add_row(ds.name, ds.task, files, _size(known), present)
    Console(markup=False).print(table)  # the title names a folder: printed as it is


@data_app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="A dataset name (see `rnnlab data list`) or 'all'."),
    data_dir: Path | None = DataDir,
) -> None:
    """Download a dataset (or all) into the data directory, verified; present files are reused."""
    names = list(registry.DATASETS) if name == "all" else [registry.dataset(name).name]
    failed = []
    for n in names:
        try:
            for path in registry.fetch(n, data_dir).values():
                typer.echo(f"{n}: {path}")
        except RnnlabError as err:
            if len(names) == 1:
                raise
            print(f"error: {err}", file=sys.stderr)  # go on with the others, fail at the end
            failed.append(n)
    if failed:
        raise RnnlabError(f"{len(failed)} of {len(names)} datasets failed: {', '.join(failed)}")


@data_app.command("path")
def path(data_dir: Path | None = DataDir) -> None:
    """Print the data directory."""
    typer.echo(registry.data_dir(data_dir))
