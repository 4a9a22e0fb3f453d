"""Typed checks of what rnnlab reads back: a config's values, ``model.json``, a checkpoint's state.

A type annotation is the schema: ``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, unions
with ``None``, ``list[T]``, ``tuple[T, ...]`` or ``tuple[A, B]``, ``dict[str, T]``, a ``TypedDict``
and ``Any``. :func:`coerce` checks a value against one and names the first entry that does not fit.
"""

from __future__ import annotations

import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from rnnlab.errors import RnnlabError

# Integers go to C libraries (thread counts, seeds, tensor sizes): beyond 32 bits they overflow.
INT_LIMIT = 2**31 - 1


class Mismatch(Exception):
    """A value that does not fit its annotation: where it is (``key``) and what was expected."""

    def __init__(self, key: str, expected: str, value: Any) -> None:
        super().__init__(f"{key}: expected {expected}, got {value!r}")
        self.key, self.expected, self.value = key, expected, value


def type_name(tp: Any, bounded: bool = True) -> str:
    """How a message names what ``tp`` accepts ("an integer of at most …", "one of 'a', 'b'")."""
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        options = [type_name(a, bounded) for a in get_args(tp) if a is not type(None)]
        return " or ".join(options) + (" or null" if type(None) in get_args(tp) else "")
    if origin in (list, tuple):
        return f"a list of {type_name(get_args(tp)[0], bounded)}"
    if origin is dict:
        return f"a table of {type_name(get_args(tp)[1], bounded)}"
    if typing.is_typeddict(tp):
        return f"a table with {', '.join(tp.__required_keys__) or 'entries'}"
    names: dict[Any, str] = {
        int: f"an integer of at most {INT_LIMIT} in size" if bounded else "an integer",
        float: "a finite number" if bounded else "a number",
        bool: "true or false",
        str: "a string",
    }
    return names.get(tp, str(tp))


def coerce(key: str, value: Any, tp: Any, bounded: bool = True) -> Any:
    """``value`` checked against the annotation ``tp``: ints widen to floats, lists become tuples
    where a tuple is asked; anything else that does not fit raises :class:`Mismatch` naming
    ``key`` (``model.hidden``, ``scaler.std[3]``).

    ``bounded`` (a config's setting, a model's description): floats finite and integers within 32
    bits, what the libraries they go to take; unbounded (a checkpoint's counters and random
    states): any JSON number.
    """
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return coerce(key, value, arg, bounded)
            except Mismatch:
                pass
    elif origin is Literal:
        if value in get_args(tp):
            return value
    elif origin in (list, tuple):
        if isinstance(value, list | tuple):
            args = get_args(tp)
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                if len(value) != len(args):
                    raise Mismatch(key, f"a list of {len(args)} entries", value)
                kinds = args
            else:
                kinds = (args[0],) * len(value)
            items = [
                coerce(f"{key}[{i}]", v, kind, bounded)
                for i, (v, kind) in enumerate(zip(value, kinds, strict=True))
            ]
            return tuple(items) if origin is tuple else items
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            kind = get_args(tp)[1]
            return {k: coerce(f"{key}.{k}", v, kind, bounded) for k, v in value.items()}
    elif typing.is_typeddict(tp):
        if isinstance(value, dict):
            return check_entries(key, value, tp, bounded)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        integer = isinstance(value, int) and not isinstance(value, bool)
        if integer and (abs(value) <= INT_LIMIT or not bounded):
            return value
    elif tp is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and (math.isfinite(value) or not bounded):
            return float(value)
    elif tp is str and isinstance(value, str):
        return value
    raise Mismatch(key, type_name(tp, bounded), value)


def check_entries(key: str, entries: dict[str, Any], schema: Any, bounded: bool = True) -> dict:
    """A ``TypedDict`` ``schema``'s required keys present in ``entries`` and every known key of
    the right type; keys the schema does not know are kept as they are (newer files' extras)."""
    hints = typing.get_type_hints(schema)
    prefix = f"{key}." if key else ""
    for name in schema.__required_keys__:
        if name not in entries:
            raise Mismatch(f"{prefix}{name}", "an entry", "nothing")
    checked = dict(entries)
    for name, tp in hints.items():
        if name in entries:
            checked[name] = coerce(f"{prefix}{name}", entries[name], tp, bounded)
    return checked


def json_entries(text: Any, schema: Any) -> dict:
    """A JSON object held in a string (a vocabulary kept inside ``model.json``), checked against
    the ``TypedDict`` ``schema``; anything else raises :class:`Mismatch`."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise Mismatch("", "a JSON object in a string", text) from None
    if not isinstance(data, dict):
        raise Mismatch("", "a JSON object", data)
    return check_entries("", data, schema)


def entry_error(path: Path, key: str, problem: str) -> RnnlabError:
    """The one-line error for an entry of ``path`` that is there but wrong."""
    return RnnlabError(f"{path}: entry {key!r} {problem}; the file is damaged or not rnnlab's")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_entries(path: Path, entries: Any, schema: Any, bounded: bool = True) -> dict:
    """``entries`` read from ``path`` (JSON), returned as they are once they fit the ``TypedDict``
    ``schema``; the first that does not fit is a one-line error naming the file and the entry."""
    try:
        if not isinstance(entries, dict):
            raise Mismatch("", "a JSON object", entries)
        check_entries("", entries, schema, bounded)
        return entries
    except Mismatch as m:
        raise entry_error(
            path, m.key or "(the whole file)", f"should be {m.expected}, got {_short(m.value)}"
        ) from None
