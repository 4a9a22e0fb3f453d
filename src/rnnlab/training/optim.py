"""Optimizers and learning-rate schedules, as ``[train]`` names them."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from rnnlab.training.config import TrainConfig


def build_optimizer(
    params: Any, cfg: TrainConfig, capturable: bool = False, lr_on: torch.device | None = None
) -> torch.optim.Optimizer:
    """adam / adamw / sgd (+momentum) / rmsprop; rmsprop uses Keras's rho = 0.9 like the lab.

    Adam, AdamW and SGD use PyTorch's fused kernels (one kernel for all parameters, not one per
    parameter: a small model's step is mostly dispatch) where this PyTorch has them. ``capturable`` keeps the
    step counts of Adam, AdamW and RMSprop on the GPU, so a CUDA graph can record the update.
    ``lr_on``: the learning rate as a tensor on that device, which a CUDA graph reads at every
    replay (a Python float would be frozen into the graph), so a schedule can change it.
    """
    params = list(params)
    decay = cfg.weight_decay
    extra = {"capturable": True} if capturable else {}
    lr: float | Tensor = cfg.lr if lr_on is None else torch.tensor(cfg.lr, device=lr_on)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, alpha=0.9, momentum=cfg.momentum, weight_decay=decay, **extra
        )
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[
        cfg.optimizer
    ]
    kwargs = {"lr": lr, "weight_decay": decay}
    if cfg.optimizer == "sgd":
        kwargs["momentum"] = cfg.momentum
    else:
        kwargs.update(extra)
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # older PyTorch: no fused kernel on this device
        return cls(params, **kwargs)


class TensorCosine:
    """Cosine annealing to 0 over ``steps`` steps for tensor learning rates, without a host sync.

    :class:`torch.optim.lr_scheduler.CosineAnnealingLR` computes each rate from the last one,
    which it would read back from the GPU every step; this computes it from the step count
    (the closed form, the same rates) and fills the tensor in place, where a graph reads it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int) -> None:
        self.groups = optimizer.param_groups
        self.base = [float(group["lr"]) for group in self.groups]
        self.steps, self.last_epoch = max(steps, 1), 0

    def step(self) -> None:
        self.last_epoch += 1
        self._fill()

    def _fill(self) -> None:
        share = (1 + math.cos(math.pi * self.last_epoch / self.steps)) / 2
        for group, base in zip(self.groups, self.base, strict=True):
            group["lr"].fill_(base * share)

    def state_dict(self) -> dict[str, Any]:
        """CosineAnnealingLR's keys: either can continue the other's checkpoint."""
        return {"last_epoch": self.last_epoch, "base_lrs": self.base}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_epoch, self.base = state["last_epoch"], [float(b) for b in state["base_lrs"]]
        self._fill()


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps: int
) -> torch.optim.lr_scheduler.LRScheduler | TensorCosine | None:
    """A per-step learning-rate schedule over ``steps`` optimizer steps, or None if constant."""
    if cfg.schedule == "cosine":
        if isinstance(optimizer.param_groups[0]["lr"], Tensor):
            return TensorCosine(optimizer, steps)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=max(steps, 1)
        )
    return None
