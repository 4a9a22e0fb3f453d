"""Every command's ``--help`` reads as prose at a terminal's width."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from rnnlab.cli import app


def _commands(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if hasattr(command, "commands"):  # a group
        return [p for name, sub in command.commands.items() for p in _commands(sub, (*path, name))]
    return [path]


COMMANDS = _commands(typer.main.get_command(app))


def test_every_command_is_listed():
    assert {("run",), ("eval",), ("diagnose", "gradients"), ("data", "list")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_paragraphs_fill_the_terminal_width(path):
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    description = shown.output.split("Usage:")[1].split("╭")[0].splitlines()[1:]
    paragraphs = "\n".join(line.rstrip() for line in description).strip().split("\n\n")
    for paragraph in paragraphs:
        # A line cut short inside a paragraph is a line break of the docstring's source shown as is.
        for line in paragraph.splitlines()[:-1]:
            assert len(line) >= 60, (path, line, paragraph)
