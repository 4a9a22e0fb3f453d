"""Heads over :class:`rnnlab.nn.Recurrent`: the lecture's mappings as small modules, each built
from a typed config (a :class:`~rnnlab.nn.RecurrentConfig` with the head's own keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnlab.config import check_at_least, check_fraction
from rnnlab.errors import SettingError
from rnnlab.nn.frontends import Downsample
from rnnlab.nn.recurrent import Recurrent, RecurrentConfig, settle


@dataclass
class HeadConfig(RecurrentConfig):
    """A recurrent stack under a linear head, with dropout on what the head reads."""

    head_dropout: float = 0.0

    def check(self) -> None:
        super().check()
        check_fraction("model.head_dropout", self.head_dropout)


@dataclass
class ManyToOneConfig(HeadConfig):
    """A recurrent stack read into one vector: its last state, or its outputs pooled over time
    (``meanmax``: the mean and the max side by side); with ``downsample`` > 1, a learned front-end
    first reads that many steps into one (:class:`rnnlab.nn.frontends.Downsample`, with
    ``frontend_channels`` channels)."""

    pool: Literal["last", "mean", "max", "meanmax"] = "last"
    downsample: int = 1
    frontend: Literal["conv", "mean"] = "conv"  # learned, or each stride's mean (no weights)
    frontend_channels: int = 64
    # Convolutions at full length before the strided one: 0 means none, and no front-end at all
    # unless downsample > 1.
    frontend_layers: int = 0

    def check(self) -> None:
        super().check()
        check_at_least("model", self, 1, "downsample", "frontend_channels")
        check_at_least("model", self, 0, "frontend_layers")


@dataclass
class CharLMConfig(HeadConfig):
    """A character model: its input (0 = one-hot characters, the lab's; else an embedding of that
    size) and a stack that reads left to right."""

    embedding: int = 0

    def check(self) -> None:
        super().check()
        check_at_least("model", self, 0, "embedding")
        if self.bidirectional:
            raise SettingError(
                "config key model.bidirectional must be false: text is generated forwards"
            )


def last_hidden(state: Any, directions: int) -> Tensor:
    """The top layer's final hidden state, both directions concatenated: (B, H * directions).

    With ragged lengths the forward direction's final state is the one at each sequence's own last
    step, and the backward direction's is the one after reading back to the first element.
    """
    h = state[0] if isinstance(state, tuple) else state  # (layers*directions, B, H)
    return torch.cat(list(h[-directions:]), dim=-1)


def pool_over_time(
    outputs: Tensor, lengths: Tensor | None, how: Literal["mean", "max", "meanmax"]
) -> Tensor:
    """Mean or max of outputs (B, T, H) over each sequence's own steps: (B, H); both side by side
    for ``meanmax``: (B, 2H)."""
    if how == "meanmax":
        return torch.cat(
            [pool_over_time(outputs, lengths, "mean"), pool_over_time(outputs, lengths, "max")], -1
        )
    if lengths is None:
        return outputs.mean(1) if how == "mean" else outputs.amax(1)
    lengths = lengths.to(outputs.device)
    real = (torch.arange(outputs.shape[1], device=outputs.device) < lengths[:, None])[..., None]
    if how == "mean":
        return (outputs * real).sum(1) / lengths[:, None].to(outputs.dtype)
    return outputs.masked_fill(~real, float("-inf")).amax(1)


class ManyToOne(nn.Module):
    """Sequence -> one vector of ``outputs`` values (regression or class logits).

    Inputs are either real-valued features (B, T, input_size) or token ids (B, T) when
    ``vocab_size`` is given (then an embedding of ``input_size`` dims with 0 as padding comes
    first). The head reads the top layer's last state (``pool="last"``, the lab's), or the mean or
    max of its outputs over every step: a day's pattern of readings may matter more than where it
    ends.
    """

    def __init__(
        self,
        input_size: int,
        outputs: int,
        config: ManyToOneConfig | None = None,
        vocab_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        config = settle(config, ManyToOneConfig, options)
        self.config, self.pool = config, config.pool
        self.embed = nn.Embedding(vocab_size, input_size, padding_idx=0) if vocab_size else None
        self.frontend: Downsample | None = None
        if config.downsample > 1 or config.frontend_layers > 0:
            self.frontend = Downsample(
                input_size,
                config.frontend_channels,
                config.downsample,
                config.frontend == "conv",
                config.frontend_layers + 1,
            )
            input_size = self.frontend.channels
        self.rnn = Recurrent(input_size, config=config)
        self.dropout = nn.Dropout(config.head_dropout)
        pooled = 2 if config.pool == "meanmax" else 1
        self.head = nn.Linear(self.rnn.output_size * pooled, outputs)
        if config.init == "keras":  # the lab's Dense and Embedding initialisers
            nn.init.xavier_uniform_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            if self.embed is not None:
                nn.init.uniform_(self.embed.weight, -0.05, 0.05)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (B, T, F) or token ids (B, T) -> (B, outputs)."""
        if self.embed is not None:
            x = self.embed(x)  # (B, T, E)
        if self.frontend is not None:
            x, lengths = self.frontend(x, lengths)  # (B, T / stride, C)
        # Right padding comes after each sequence's last step and cannot change a forward
        # direction's outputs before it, so a unidirectional stack runs unpacked (packing is the
        # slower path on the CPU) and reads the real steps only. A backward direction needs it.
        unpacked = lengths is not None and self.rnn.directions == 1
        outputs, state = self.rnn(x, None if unpacked else lengths)  # (B, T, H * directions)
        if self.pool != "last":
            summary = pool_over_time(outputs, lengths, self.pool)
        elif lengths is not None and unpacked:
            summary = outputs[torch.arange(x.shape[0], device=x.device), lengths.to(x.device) - 1]
        else:
            summary = last_hidden(state, self.rnn.directions)  # (B, H * directions)
        return self.head(self.dropout(summary))


class CharLM(nn.Module):
    """Character language model: characters -> ``Recurrent`` -> logits over the vocabulary.

    Inputs are character ids (B, T). ``embedding=0`` feeds them one-hot, as the lab; the one-hot
    vectors are rows of a fixed identity matrix looked up by id, never a (B, T, V) tensor built
    and multiplied. ``embedding=E`` learns an E-dim embedding instead. The head gives logits at
    every step (many-to-many, truncated BPTT over streams) or at the last step only (the lab's
    windows). ``head_dropout`` drops top-layer outputs before the head (``dropout`` only acts
    between layers).
    """

    def __init__(self, vocab_size: int, config: CharLMConfig | None = None, **options: Any) -> None:
        super().__init__()
        config = settle(config, CharLMConfig, options)
        self.config = config
        if config.embedding:
            self.embed = nn.Embedding(vocab_size, config.embedding)
        else:
            self.embed = nn.Embedding.from_pretrained(torch.eye(vocab_size), freeze=True)
        self.vocab_size = vocab_size
        self.rnn = Recurrent(self.embed.embedding_dim, config=config)
        self.dropout = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(self.rnn.output_size, vocab_size)

    def forward(
        self, ids: Tensor, state: Any = None, last_only: bool = False
    ) -> tuple[Tensor, Any]:
        """ids (B, T) -> logits (B, T, V), or (B, V) with ``last_only``, and the final state."""
        outputs, state = self.rnn(self.embed(ids), state=state)  # (B, T, H)
        if last_only:
            outputs = outputs[:, -1]  # (B, H): the head runs once per window, not T times
        return self.head(self.dropout(outputs)), state
