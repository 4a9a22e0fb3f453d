"""Run configuration: three typed sections, ``[data]``, ``[model]`` and ``[train]``, read from TOML.

Each task declares its sections as dataclasses (the types: the model's come from
:mod:`rnnlab.nn`, the loop's from :mod:`rnnlab.training.config`, the data's from the task) and
ships a TOML file with the lab's settings (the values). A user's file and ``--set section.key=value`` overrides are checked against
the dataclasses: an unknown key or a value of the wrong type is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomli_w

from rnnlab.errors import RnnlabError, SettingError
from rnnlab.schema import Mismatch, coerce

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

CONFIG_DIR = Path(__file__).parent / "configs"


def check_at_least(section: str, config: Any, low: int, *keys: str) -> None:
    """Each ``section.key`` of ``config`` named in ``keys`` is ``low`` or more (None: not set)."""
    for key in keys:
        value = getattr(config, key)
        if value is not None and value < low:
            raise SettingError(f"config key {section}.{key} must be >= {low}, got {value}")


def check_positive(key: str, value: float | None) -> None:
    """A rate or a scale: above 0 (None: not set)."""
    if value is not None and not value > 0:
        raise SettingError(f"config key {key} must be > 0, got {value}")


def check_given(key: str, value: object, wanted: str) -> None:
    """A key a task cannot run without (a user's own file): unset is a one-line error saying
    what to give, ``wanted`` (with an example)."""
    if value is None:
        raise SettingError(f"config key {key} is not set: give {wanted}")


def check_share(key: str, value: float) -> None:
    """A share of the data (validation, test): strictly between 0 and 1."""
    if not 0.0 < value < 1.0:
        raise SettingError(f"config key {key} must be in (0, 1), got {value}")


def check_probability(key: str, value: float) -> None:
    """A probability or a weight of a mix: between 0 and 1, both included."""
    if not 0.0 <= value <= 1.0:
        raise SettingError(f"config key {key} must be in [0, 1], got {value}")


def check_fraction(key: str, value: float) -> None:
    """A share of units dropped: from 0 (none) up to, not including, 1."""
    if not 0.0 <= value < 1.0:
        raise SettingError(f"config key {key} must be in [0, 1), got {value}")


@dataclass
class Config:
    """A task's whole configuration."""

    task: str
    data: Any
    model: Any
    train: Any

    def to_dict(self) -> dict[str, Any]:
        """Nested dict of the three sections (``None`` values left out: TOML has no null)."""

        def clean(section: Any) -> dict[str, Any]:
            return {k: v for k, v in dataclasses.asdict(section).items() if v is not None}

        return {
            "task": self.task,
            "data": clean(self.data),
            "model": clean(self.model),
            "train": clean(self.train),
        }

    def to_toml(self) -> str:
        """The fully resolved configuration as TOML text."""
        return tomli_w.dumps(self.to_dict())

    def with_absolute_paths(self) -> Config:
        """A copy whose data files (``data.path``, ``train``, ``test``, ``pieces``, ``transfer``)
        are absolute.

        A run's ``config.toml`` keeps them so: ``rnnlab eval`` and ``--resume`` work from any
        directory, not only the one the run started in.
        """
        files = {
            key: str(Path(value).resolve())
            for key in ("path", "train", "test", "pieces", "transfer")
            if isinstance(value := getattr(self.data, key, None), str)
        }
        return dataclasses.replace(self, data=dataclasses.replace(self.data, **files))


def check_types(section: str, config: Any) -> None:
    """Every key of a config dataclass of the type its annotation names (a config built in
    Python, not read from TOML, is checked the same way): a one-line error naming the key."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        try:
            coerce(f"{section}.{f.name}", getattr(config, f.name), hints[f.name])
        except Mismatch as m:
            raise SettingError(
                f"config key {m.key!r} must be {m.expected}, got {m.value!r}"
            ) from None


def _section(name: str, cls: type, values: dict[str, Any], source: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            # a near miss is named; otherwise every key of the section, so nobody reads the code
            hint = (
                f"did you mean {name}.{close[0]}?" if close else f"{name} keys: {', '.join(known)}"
            )
            raise RnnlabError(f"{source}: unknown config key {name}.{key} ({hint})")
        try:
            kwargs[key] = coerce(f"{name}.{key}", value, hints[key])
        except Mismatch as m:
            raise SettingError(
                f"config key {m.key!r} must be {m.expected}, got {m.value!r}"
            ) from None
    section = cls(**kwargs)
    check = getattr(section, "check", None)
    if check is not None:
        check()
    return section


Override = str | tuple[str, str, Any]
"""One setting over a config: ``"train.epochs=5"`` (``--set``, the value read as TOML) or
``("train", "epochs", 5)`` (from Python: any value, ``None`` included)."""


def parse_override(text: Override) -> tuple[str, str, Any]:
    """``"train.epochs=5"`` -> ``("train", "epochs", 5)``; the value is read as TOML, else a string."""
    if not isinstance(text, str):
        return text
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name or section not in ("data", "model", "train"):
        raise RnnlabError(
            f"--set {text!r}: expected SECTION.KEY=VALUE with SECTION one of data, model, train"
        )
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, name, value


def override_text(override: Override) -> str:
    """An override as ``--set`` writes it (``None``, which TOML cannot write, as ``null``)."""
    if isinstance(override, str):
        return override
    section, key, value = override
    shown = "null" if value is None else tomli_w.dumps({"v": value}).partition("=")[2].strip()
    return f"{section}.{key}={' '.join(shown.split())}"


CONFIG_LIMIT = 1 << 20  # bytes: a config is a page of settings, never megabytes


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing, oversized or unreadable file is a one-line error naming it."""
    if path.exists() and not path.is_file():
        raise RnnlabError(f"config file {path} is not a regular file; expected a TOML file")
    try:
        with open(path, "rb") as f:
            raw = f.read(CONFIG_LIMIT + 1)
    except FileNotFoundError:
        raise RnnlabError(f"config file {path} does not exist") from None
    if len(raw) > CONFIG_LIMIT:
        raise RnnlabError(
            f"config file {path} is over {CONFIG_LIMIT // 1024} KiB; expected a TOML file of settings"
        )
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise RnnlabError(f"config file {path} is not valid TOML: {err}") from None


def load_config(
    task: str,
    sections: dict[str, type],
    path: Path | None = None,
    overrides: typing.Sequence[Override] = (),
) -> Config:
    """Build a task's :class:`Config`: the task's packaged TOML, then ``path``, then ``overrides``.

    ``sections`` maps ``"data"``, ``"model"``, ``"train"`` to the task's dataclasses.
    """
    merged: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
    layers = [(CONFIG_DIR / f"{task}.toml", read_toml(CONFIG_DIR / f"{task}.toml"))]
    if path is not None:
        layers.append((path, read_toml(path)))
    for source, values in layers:
        for name, body in values.items():
            if name == "task":
                if body != task:
                    raise RnnlabError(f"{source}: is a config for task {body!r}, not {task!r}")
                continue
            if name not in merged or not isinstance(body, dict):
                raise RnnlabError(
                    f"{source}: unknown config section {name!r} (expected data, model, train)"
                )
            merged[name].update(body)
    for text in overrides:
        section, key, value = parse_override(text)
        merged[section][key] = value
    built = {
        name: _section(name, sections[name], merged[name], str(path or f"{task} config"))
        for name in merged
    }
    return Config(task=task, **built)
