"""Resumable training checkpoints: tensors in one safetensors file, everything else in JSON.

``RUN_DIR/last/`` holds ``state.safetensors`` (model, best weights, optimizer tensors, torch RNG,
the carried recurrent state of truncated BPTT) and ``state.json`` (counters, history, optimizer
hyper-parameters, schedule, Python and NumPy RNG). It is written as a new directory and swapped in
with renames, so a crash at any moment leaves either the old or the new checkpoint whole.
Nothing is unpickled on load.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError

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
) -> Snapshot:
    """Copy a complete training state: later steps cannot change what :func:`write` writes."""
    tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if best is not None:
        tensors |= {f"best.{k}": v for k, v in best.items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer)
    tensors |= optim_tensors | _flatten_carry(carry)
    tensors["rng.torch"] = torch.get_rng_state()
    np_state = np.random.get_state()
    meta = {
        "format_version": FORMAT_VERSION,
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
    """Write ``state`` to ``directory``, replacing what is there atomically (safe in a thread)."""
    new = directory.with_name(f"{directory.name}.new")
    old = directory.with_name(f"{directory.name}.old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    safetensors.torch.save_file(state.tensors, str(new / TENSORS))
    (new / META).write_text(state.meta, encoding="utf-8")
    for f in (new / TENSORS, new / META):
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    new.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def exists(directory: Path) -> bool:
    """Whether a checkpoint is there (or its previous copy, if a swap was cut short)."""
    return (directory / META).exists() or (
        directory.with_name(f"{directory.name}.old") / META
    ).exists()


def load(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> tuple[dict[str, Any], dict[str, Tensor] | None, Any]:
    """Restore a state written by :func:`save`; returns (progress, best weights, carried state)."""
    if not (directory / META).exists():
        old = directory.with_name(f"{directory.name}.old")
        directory = old if (old / META).exists() else directory
    try:
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
        tensors = safetensors.torch.load_file(str(directory / TENSORS))
    except FileNotFoundError:
        raise RnnlabError(f"{directory}: no checkpoint to resume from") from None
    except (json.JSONDecodeError, safetensors.SafetensorError, OSError, ValueError) as err:
        raise RnnlabError(f"{directory}: damaged checkpoint ({str(err).splitlines()[0]})") from None
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RnnlabError(
            f"{directory / META}: checkpoint format {version!r}; this rnnlab reads "
            f"{FORMAT_VERSION} and older"
        )
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    if set(weights) != set(expected) or any(weights[k].shape != expected[k].shape for k in weights):
        raise RnnlabError(f"{directory}: the checkpoint is for another model architecture")
    model.load_state_dict(weights)
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
    best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")} or None
    carry = _unflatten_carry(
        {k: v.to(device) for k, v in tensors.items() if k.startswith("carry.")},
        meta["carry"]["count"],
        meta["carry"]["tuple"],
    )
    return meta["progress"], best, carry
