"""The ``[train]`` section: the training loop's settings, one default and one check per key."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from rnnlab.config import check_at_least, check_positive
from rnnlab.errors import RnnlabError


@dataclass
class TrainConfig:
    """The training loop's settings (see :class:`rnnlab.training.trainer.Trainer`)."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    clip_norm: float | None = None
    clip_value: float | None = None
    seed: int = 0
    patience: int | None = None
    monitor: str = "val_loss"
    # Which epoch is the best when the monitored metric ties (an accuracy on few validation
    # examples often does): the earlier, or the later one, trained longer.
    ties: Literal["earlier", "later"] = "earlier"
    eval_batch_size: int = 4096
    threads: int | None = None
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"  # auto: see training.device
    checkpoint_every: int | None = None
    deterministic: bool = False
    cuda_graphs: bool = True

    def check(self) -> None:
        """Value checks the types cannot express."""
        counts = (
            "epochs",
            "batch_size",
            "eval_batch_size",
            "patience",
            "threads",
            "checkpoint_every",
        )
        check_at_least("train", self, 1, *counts)
        check_at_least("train", self, 0, "momentum", "weight_decay", "seed")
        cpus = os.cpu_count() or 1
        if self.threads is not None and self.threads > cpus:
            raise RnnlabError(
                f"config key train.threads must be at most {cpus} (this machine's CPUs), "
                f"got {self.threads}"
            )
        for key in ("lr", "clip_norm", "clip_value"):
            check_positive(f"train.{key}", getattr(self, key))
