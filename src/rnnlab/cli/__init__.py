"""The ``rnnlab`` command line: the typer app (:mod:`.commands`) and its entry point."""

from rnnlab.cli.commands import app, main

__all__ = ["app", "main"]
