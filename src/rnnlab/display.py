"""Progress bars for long work, one look everywhere: what runs, a bar, done of total, a line of
details, the time spent and the time left."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bars(
    console: Console,
    label: str = "[bold]{task.description}",
    info: str | None = "{task.fields[info]}",
    disable: bool = False,
) -> Progress:
    """Bars on ``console`` that go when their work ends (``transient``): ``label``, a bar, done
    of total, ``info`` (a task field, where given), elapsed time and the ETA. Off with
    ``disable``, and drawn only on a terminal: a log file gets its lines, not a bar's frames."""
    columns: list[ProgressColumn] = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if info is not None:
        columns.append(TextColumn(info))
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    return Progress(*columns, console=console, transient=True, disable=disable)
