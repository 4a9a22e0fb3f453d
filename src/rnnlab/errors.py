"""The one exception type the CLI shows to users as a single line (no traceback)."""

from pathlib import Path


class RnnlabError(Exception):
    """Bad input from the user: a file, row, option or value, named, with what was expected.

    The message must be one line. The CLI prints ``error: <message>`` on stderr and exits with 2.
    """


class SettingError(RnnlabError, ValueError):
    """A setting out of its range, or one that does not apply: a config key's value, or the same
    option given to a model in Python (so it is also the ``ValueError`` Python code expects)."""


def check_file(path: Path, expected: str) -> None:
    """Refuse a ``path`` that is not a file: missing, or a directory where a file belongs."""
    if path.is_dir():
        raise RnnlabError(f"{path}: a directory, expected {expected}")
    if not path.is_file():
        raise RnnlabError(f"{path}: no such file (expected {expected})")
