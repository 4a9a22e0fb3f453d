"""Resumable training checkpoints: tensors in one safetensors file, everything else in JSON.

``RUN_DIR/last/`` holds ``state.safetensors`` (model, best weights, optimizer tensors, torch RNG,
the carried recurrent state of truncated BPTT) and ``state.json`` (counters, history, optimizer
hyper-parameters, schedule, Python and NumPy RNG). It is written as a new directory and swapped in
with renames, so a crash at any moment leaves either the old or the new checkpoint whole.
Nothing is unpickled on load.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError
from rnnlab.files import check_finite, save_tensors, write_bytes
from rnnlab.schema import read_entries

FORMAT_VERSION = 1
TENSORS, META = "state.safetensors", "state.json"


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    # A learning rate kept as a tensor (for CUDA graphs) is saved as its number.
    groups = [
        {k: v.item() if isinstance(v, Tensor) else v for k, v in group.items()}
        for group in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _flatten_carry(carry: Any) -> dict[str, Tensor]:
    if carry is None:
        return {}
    parts = carry if isinstance(carry, tuple | list) else (carry,)
    return {f"carry.{i}": part for i, part in enumerate(parts)}


def _unflatten_carry(tensors: dict[str, Tensor], count: int, was_tuple: bool) -> Any:
    if count == 0:
        return None
    parts = tuple(tensors[f"carry.{i}"] for i in range(count))
    return parts if was_tuple else parts[0]


@dataclass(frozen=True)
class Snapshot:
    """A training state copied out of the live objects, ready to be written while training goes on."""

    tensors: dict[str, Tensor]
    meta: str  # JSON


def snapshot(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    scaler: torch.amp.GradScaler,
    progress: dict[str, Any],
    best: dict[str, Tensor] | None,
    carry: Any,
    run: dict[str, Any] | None = None,
) -> Snapshot:
    """Copy a complete training state: later steps cannot change what :func:`write` writes.

    ``run``: what the run is (its resolved config, its thread count), kept so that a resumed run
    can be checked against it (:func:`recorded_run`).
    """
    tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if best is not None:
        tensors |= {f"best.{k}": v for k, v in best.items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer)
    tensors |= optim_tensors | _flatten_carry(carry)
    tensors["rng.torch"] = torch.get_rng_state()
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    meta = {
        "format_version": FORMAT_VERSION,
        "run": run or {},
        "progress": progress,
        "optimizer": optim_meta,
        "schedule": schedule.state_dict() if schedule is not None else None,
        "scaler": scaler.state_dict(),
        "carry": {
            "count": len(_flatten_carry(carry)),
            "tuple": isinstance(carry, tuple | list),
        },
        "rng": {
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
            "numpy": [np_state[0], np_state[1].tolist(), *map(float, np_state[2:])],
        },
    }
    # A copy even on the CPU, where .cpu() would alias the weights the next step updates.
    copied = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    return Snapshot(copied, json.dumps(meta) + "\n")


def write(directory: Path, state: Snapshot) -> None:
    """Write ``state`` to ``directory``, replacing what is there atomically (safe in a thread).

    A write that fails (a full disk) leaves the last good checkpoint as it was and nothing
    half-written beside it, and raises a one-line error naming the file.
    """
    new = directory.with_name(f"{directory.name}.new")
    old = directory.with_name(f"{directory.name}.old")
    shutil.rmtree(new, ignore_errors=True)
    try:
        new.mkdir(parents=True)
        save_tensors(new / TENSORS, state.tensors, sync=True)
        write_bytes(new / META, state.meta.encode("utf-8"), sync=True)
    except OSError as err:
        shutil.rmtree(new, ignore_errors=True)
        where = str(err.filename or new).replace(str(new), str(directory))
        kept = "the last good one is kept" if exists(directory) else "there is none yet"
        raise RnnlabError(
            f"{where}: {err.strerror}; the checkpoint could not be written ({kept})"
        ) from None
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    new.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


class Writer:
    """Writes checkpoints one at a time in a background thread, so training goes on meanwhile.

    Where no thread can start (a busy machine at its limit of threads), the checkpoint is written
    in the foreground instead: an epoch that finished is never lost for want of a thread.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, directory: Path, state: Snapshot) -> None:
        """Write ``state`` once the write before it is done; a failure raises at the next call."""
        self.wait()

        def work() -> None:
            try:
                write(directory, state)
            except BaseException as err:  # re-raised in the training thread by wait()
                self._error = err

        thread = threading.Thread(target=work, name="rnnlab-checkpoint")
        try:
            thread.start()
        except RuntimeError:
            write(directory, state)
            return
        self._thread = thread

    def wait(self) -> None:
        """Wait for the write under way, if any; one that failed raises here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def exists(directory: Path) -> bool:
    """Whether a checkpoint is there (or its previous copy, if a swap was cut short)."""
    return (directory / META).exists() or (
        directory.with_name(f"{directory.name}.old") / META
    ).exists()


class _Optimizer(TypedDict):
    param_groups: list[dict[str, Any]]
    scalars: dict[str, Any]


class _Carry(TypedDict):
    count: int
    tuple: bool


class _Rng(TypedDict):
    python: tuple[int, list[int], float | None]
    numpy: tuple[str, list[int], float, float, float]


class _StateRequired(TypedDict):
    format_version: int
    progress: dict[str, Any]  # the trainer's: rnnlab.train.TrainingState
    optimizer: _Optimizer
    schedule: dict[str, Any] | None
    scaler: dict[str, Any]
    carry: _Carry
    rng: _Rng


class State(_StateRequired, total=False):
    """``state.json``'s schema."""

    run: dict[str, Any]


def _locate(directory: Path) -> Path:
    """The checkpoint's folder: ``directory``, or its previous copy if a swap was cut short."""
    if not (directory / META).exists():
        old = directory.with_name(f"{directory.name}.old")
        return old if (old / META).exists() else directory
    return directory


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnnlabError(f"{directory}: no checkpoint to resume from") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise RnnlabError(f"{path}: damaged checkpoint ({str(err).splitlines()[0]})") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RnnlabError(
            f"{path}: checkpoint format {version!r}; this rnnlab reads {FORMAT_VERSION} and older"
        )
    return read_entries(path, meta, State, bounded=False)


def recorded_run(directory: Path) -> dict[str, Any]:
    """What a checkpoint says its run is (``run`` of :func:`snapshot`); empty if it says nothing."""
    return dict(_read_meta(_locate(directory)).get("run", {}))


def load(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> tuple[dict[str, Any], dict[str, Tensor] | None, Any]:
    """Restore a state written by :func:`write`; returns (progress, best weights, carried state).

    Every entry of ``state.json`` is checked against its schema and every weight must be finite:
    a damaged checkpoint is a one-line error naming the file, never a traceback.
    """
    directory = _locate(directory)
    meta = _read_meta(directory)
    try:
        tensors = safetensors.torch.load_file(str(directory / TENSORS))
    except FileNotFoundError:
        raise RnnlabError(f"{directory}: no checkpoint to resume from") from None
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise RnnlabError(
            f"{directory / TENSORS}: damaged checkpoint ({str(err).splitlines()[0]})"
        ) from None
    check_finite(directory / TENSORS, {k: v for k, v in tensors.items() if k.startswith("model.")})
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    if set(weights) != set(expected) or any(weights[k].shape != expected[k].shape for k in weights):
        raise RnnlabError(f"{directory}: the checkpoint is for another model architecture")
    try:
        _restore(meta, tensors, model, optimizer, schedule, scaler)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as err:
        raise RnnlabError(
            f"{directory / META}: damaged checkpoint (its state does not fit this run: "
            f"{' '.join(str(err).split())[:120]})"
        ) from None
    best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")} or None
    carry = _unflatten_carry(
        {k: v.to(device) for k, v in tensors.items() if k.startswith("carry.")},
        meta["carry"]["count"],
        meta["carry"]["tuple"],
    )
    return meta["progress"], best, carry


def _restore(
    meta: dict[str, Any],
    tensors: dict[str, Tensor],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    scaler: torch.amp.GradScaler,
) -> None:
    """Load a checked state into the live objects: weights, optimizer, schedule, scaler, RNGs."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    live = [
        {k: v for k, v in group.items() if isinstance(v, Tensor)}
        for group in optimizer.param_groups
    ]
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    for group, kept in zip(optimizer.param_groups, live, strict=True):
        for key, tensor in kept.items():  # the same tensors (a graph reads them), new values
            group[key] = tensor.fill_(group[key])
    if schedule is not None and meta["schedule"] is not None:
        schedule.load_state_dict(meta["schedule"])
    scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    py = meta["rng"]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = meta["rng"]["numpy"]
    np.random.set_state(
        (npy[0], np.array(npy[1], dtype=np.uint32), int(npy[2]), int(npy[3]), npy[4])
    )
