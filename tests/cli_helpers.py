"""Run the real ``rnnlab`` entry point in-process and capture what a user would see."""

from __future__ import annotations

import sys

import pytest

from rnnlab.cli import main


def rnnlab(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``rnnlab ARGS…`` -> (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["rnnlab", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *names: str) -> None:
    """Non-zero exit, exactly one line on stderr, no traceback, naming every culprit in ``names``."""
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
