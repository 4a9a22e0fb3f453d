"""Heads over :class:`rnnlab.Recurrent`: the lecture's mappings as small modules."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.recurrent import Recurrent


def last_hidden(state: Any, directions: int) -> Tensor:
    """The top layer's final hidden state, both directions concatenated: (B, H * directions).

    With ragged lengths the forward direction's final state is the one at each sequence's own last
    step, and the backward direction's is the one after reading back to the first element.
    """
    h = state[0] if isinstance(state, tuple) else state  # (layers*directions, B, H)
    return torch.cat(list(h[-directions:]), dim=-1)


class ManyToOne(nn.Module):
    """Sequence -> one vector of ``outputs`` values (regression or class logits).

    Inputs are either real-valued features (B, T, input_size) or token ids (B, T) when
    ``vocab_size`` is given (then an embedding of ``embedding`` dims with 0 as padding comes first).
    """

    def __init__(
        self,
        input_size: int,
        outputs: int,
        recurrent: dict[str, Any],
        vocab_size: int | None = None,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, input_size, padding_idx=0) if vocab_size else None
        self.rnn = Recurrent(input_size, **recurrent)
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(self.rnn.output_size, outputs)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (B, T, F) or token ids (B, T) -> (B, outputs)."""
        if self.embed is not None:
            x = self.embed(x)  # (B, T, E)
        _, state = self.rnn(x, lengths)
        return self.head(self.dropout(last_hidden(state, self.rnn.directions)))
