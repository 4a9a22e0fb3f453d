"""What the benchmark scripts that take one task share: their arguments, and one-line errors.

Light on purpose (no torch): ``profile_task.py`` times torch's own imports after this one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from rnnlab.errors import RnnlabError


def task_parser(doc: str | None, set_example: str) -> argparse.ArgumentParser:
    """A parser with the script's docstring as help, then ``task``, ``--set`` and ``--data-dir``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("task")
    parser.add_argument("--set", action="append", default=[], help=f"override, e.g. {set_example}")
    parser.add_argument("--data-dir", type=Path, default=None)
    return parser


def run_main(main: Callable[[], None]) -> None:
    """Run ``main``; an unknown task, a bad ``--set`` or an ``--out`` in use end in one line."""
    try:
        main()
    except RnnlabError as error:
        raise SystemExit(f"error: {error}") from None
