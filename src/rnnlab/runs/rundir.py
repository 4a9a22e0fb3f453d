"""The run directory: what a run writes and how it is read back.

A run directory holds ``config.toml``, ``history.csv``, ``metrics.json``, ``model.safetensors`` +
``model.json``, plots, and ``last/`` (the checkpoint). Nothing in it is ever unpickled: loading a
model shared by a stranger reads tensors and JSON only. A lock keeps one process training there.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import safetensors
import safetensors.torch
from torch import nn

from rnnlab.errors import RnnlabError
from rnnlab.files import check_finite, read_json, save_tensors, write_json

FORMAT_VERSION = 1


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
