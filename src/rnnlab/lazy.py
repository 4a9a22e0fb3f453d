"""Package names imported on first use: ``import rnnlab`` (and so ``rnnlab --help`` or ``rnnlab data
list``) does not pay for importing torch, a second or more, until a model or loader is needed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def exports(
    package: str, modules: dict[str, list[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` (PEP 562) for ``package``: each name of
    ``modules[module]`` is imported from ``module`` when first read, then kept as an ordinary
    attribute; ``dir()`` (and so tab completion) lists them all from the start."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(where[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
