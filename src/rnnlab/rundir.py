"""The run directory: every file written atomically, weights in safetensors, the rest JSON/CSV/TOML.

A run directory holds ``config.toml``, ``history.csv``, ``metrics.json``, ``model.safetensors`` +
``model.json`` and plots. Nothing in it is ever unpickled: loading a model shared by a stranger
reads tensors and JSON only.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError

FORMAT_VERSION = 1
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


def new_run_dir(task: str, out: Path | None = None) -> Path:
    """``out`` if given, else ``runs/TASK/YYYYmmdd-HHMMSS`` (a suffix keeps it unique).

    An ``out`` that already holds files is refused: a new run must not overwrite or mix with them.
    """
    if out is not None and out.is_dir() and any(out.iterdir()):
        raise RnnlabError(
            f"{out}: not empty; a new run needs a new or empty --out directory "
            f"(`--resume {out}` continues an interrupted run, study or report)"
        )
    if out is None:
        base = Path("runs") / task / time.strftime("%Y%m%d-%H%M%S")
        out, n = base, 1
        while out.exists():
            n += 1
            out = base.with_name(f"{base.name}-{n}")
    out.mkdir(parents=True, exist_ok=True)
    return out


LOCK = ".rnnlab.lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``RUN_DIR/.rnnlab.lock`` while a run trains there.

    A second process that would train in the same folder (``--resume`` of a run still going, two
    runs given one ``--out``) gets a one-line error instead. The lock is the operating system's
    (``flock``): it ends with the process that holds it, so the file a killed run leaves behind
    blocks nothing.
    """
    path = run_dir / LOCK
    with open(path, "a+", encoding="utf-8") as handle:
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RnnlabError(
                f"{run_dir}: another rnnlab process (pid {holder}) is training in this folder; "
                "wait for it to end or stop it first"
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield  # the lock goes with the file's closing


if sys.platform == "win32":
    import msvcrt

    def _try_lock(handle: IO[str]) -> bool:
        """Lock an open file's first byte without waiting; False if another process has it."""
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(handle: IO[str]) -> bool:
        """Lock an open file without waiting; False if another process has it."""
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def save_model(run_dir: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """``model.safetensors`` (weights) and ``model.json`` (task, architecture, vocabularies...)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_tensors(run_dir / "model.safetensors", state, metadata={"format": "rnnlab"})
    write_json(run_dir / "model.json", {"format_version": FORMAT_VERSION, **meta})


class ModelMeta(dict):
    """``model.json``'s entries; reading one that is missing is a one-line error naming the file."""

    def __init__(self, path: Path, entries: dict[str, Any]) -> None:
        super().__init__(entries)
        self.path = path

    def __missing__(self, key: str) -> Any:
        raise RnnlabError(f"{self.path}: no {key!r} entry; the file is damaged or not rnnlab's")


def load_model_meta(run_dir: Path) -> ModelMeta:
    """Read and check ``model.json``: a newer format version is refused."""
    if not run_dir.is_dir():
        raise RnnlabError(f"{run_dir}: not a directory; expected a run directory")
    meta = read_json(run_dir / "model.json", "run directory")
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if not isinstance(version, int):
        raise RnnlabError(f"{run_dir / 'model.json'}: no format_version; not an rnnlab model")
    if version > FORMAT_VERSION:
        raise RnnlabError(
            f"{run_dir / 'model.json'}: format version {version} is newer than this rnnlab "
            f"reads ({FORMAT_VERSION}); upgrade rnnlab"
        )
    return ModelMeta(run_dir / "model.json", meta)


def load_weights(run_dir: Path, model: nn.Module) -> None:
    """Load ``model.safetensors`` into ``model``; a truncated file or other architecture is refused."""
    path = run_dir / "model.safetensors"
    try:
        state = safetensors.torch.load_file(str(path))
    except FileNotFoundError:
        raise RnnlabError(f"{path}: missing; expected the model's weights") from None
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise RnnlabError(f"{path}: unreadable weights ({str(err).splitlines()[0]})") from None
    check_finite(path, state)
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in state):
        raise RnnlabError(
            f"{path}: the weights do not fit this model's architecture "
            f"(another task or different model settings)"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def check_finite(path: Path, tensors: dict[str, Tensor]) -> None:
    """Refuse weights holding NaN or infinity: a model that would only answer nan."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RnnlabError(
                f"{path}: tensor {name!r} holds NaN or infinite values; the weights are damaged "
                "(or come from a run that diverged)"
            )


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_distinct(run_dirs: Sequence[Path], what: str) -> None:
    """Runs to average are each named once: a run named twice would weigh double, unannounced."""
    seen: dict[Path, Path] = {}
    for run_dir in run_dirs:
        key = run_dir.resolve()
        if key in seen:
            raise RnnlabError(
                f"{what}: {run_dir} is the same run as {seen[key]}; name each run once"
            )
        seen[key] = run_dir
