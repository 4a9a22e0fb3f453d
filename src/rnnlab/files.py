"""Files written whole or not at all: text, JSON, CSV and safetensors, each through a temporary
file renamed into place, with the permissions of any new file and errors that name the file asked
for. Weights are read back with a check that they are finite. Nothing here ever unpickles.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import Tensor

from rnnlab.errors import RnnlabError

# Read once, while the process has one thread: os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    The file gets the permissions of any new file (``mkstemp`` makes it private), and a failure
    names ``path``, not the temporary file the user never asked for: a write that fails (a full
    disk) raises an ``OSError`` whose ``filename`` is ``path``, and leaves no temporary file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # a regular file where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), err.filename) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise type(err)(err.errno, err.strerror, str(path)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as err:
        # A failed write() carries no file name; one on the temporary file names that file.
        if err.filename in (None, tmp):
            raise type(err)(err.errno, err.strerror, str(path)) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(path: Path, data: bytes, sync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; with ``sync``, on the disk before it is renamed."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def save_tensors(
    path: Path,
    tensors: dict[str, Tensor],
    metadata: dict[str, str] | None = None,
    sync: bool = False,
) -> None:
    """Write ``tensors`` as a safetensors file, atomically, failing as any other file write does.

    The bytes are made in memory and written by Python: safetensors' own writer reports a full
    disk as an error of its own type, without the file's name, and makes its files private.
    """
    write_bytes(path, safetensors.torch.save(tensors, metadata), sync)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_safe(data: Any) -> Any:
    """NaN and infinity (an R² of a constant series) as null: JSON has no literal for them."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_json_safe(v) for v in data]
    return data


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (strict: NaN becomes null), atomically."""
    text = json.dumps(_json_safe(data), indent=2, sort_keys=False, allow_nan=False)
    write_text(path, text + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write dict rows (the union of their keys as the header) as CSV, atomically."""
    header: list[str] = []
    for row in rows:
        header += [k for k in row if k not in header]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file; missing or malformed is a one-line error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnnlabError(f"{path}: missing; is this a {what}?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RnnlabError(
            f"{path}: not valid JSON ({err.msg if hasattr(err, 'msg') else err})"
        ) from None


def check_finite(path: Path, tensors: dict[str, Tensor]) -> None:
    """Refuse weights holding NaN or infinity: a model that would only answer nan."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RnnlabError(
                f"{path}: tensor {name!r} holds NaN or infinite values; the weights are damaged "
                "(or come from a run that diverged)"
            )
