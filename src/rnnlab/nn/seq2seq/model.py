"""Encoder–decoder (sequence-to-sequence) models: one encoder, three decoders, greedy and beam search.

The encoder, a :class:`~rnnlab.Recurrent` (optionally bidirectional), reads the source into outputs
``m_1..m_S`` (the *memory*) and a final state whose top layer is the *code vector* ``c``. A decoder
writes the target one token at a time, ``p(y_t | y_<t, x) = softmax(W o_t + b)``, where ``o_t`` is:

- ``plain`` (the lab's; Keras ``addition_rnn``): ``s_t = RNN(s_{t-1}, c)`` from ``s_0 = 0``, ``o_t = s_t``.
  The same ``c`` is the input at every step and the decoder never sees its own outputs.
- ``peeking`` (Cho et al. 2014): ``s_t = RNN(s_{t-1}, [y_{t-1}; c])`` from the encoder's final state.
- ``attention``: a context ``c_t = sum_s a_ts m_s`` with ``a_t = softmax_s(e_ts)`` over the real
  (unpadded) source positions, and ``o_t = tanh(W_c [c_t; s_t])``. The scores ``e_ts`` are either
    - ``additive`` (Bahdanau et al. 2015): ``v . tanh(W_q s_{t-1} + W_k m_s)``; the query is the
      previous state and ``c_t`` is also part of the RNN's input, ``s_t = RNN(s_{t-1}, [y_{t-1}; c_t])``;
    - ``dot`` / ``general`` (Luong et al. 2015): ``s_t . m_s`` / ``s_t . W m_s``; the query is the
      current state, ``s_t = RNN(s_{t-1}, y_{t-1})``.

Teacher forcing (training of the feedback decoders): ``y_{t-1}`` is the true previous token with
probability ``teacher_forcing``, else the model's own most likely one. At 1.0 the peeking and Luong
decoders run the whole target in one fused pass; the additive decoder always steps, its input needs
``s_{t-1}``. Decoding is greedy or beam search (:func:`greedy`, :func:`beam_search`), batched over
examples and beams. The decoder reads a start symbol ``BOS`` first; its id is ``target_vocab``, one
past the output vocabulary, so it is never predicted.

A decoder's running state is a dict of tensors: ``"rnn.h"`` (and ``"rnn.c"``, by the cell's
state) hold the RNN state (layers, N, H), every other entry is batch first (N, ...), so that
:func:`~rnnlab.nn.seq2seq.decoding.select` can reorder beams.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnlab.config import check_at_least
from rnnlab.errors import SettingError
from rnnlab.nn.heads import last_hidden
from rnnlab.nn.recurrent import Recurrent, RecurrentConfig, settle
from rnnlab.nn.seq2seq.decoding import Beams, Decoded, State, beam_search, greedy

DecoderKind = Literal["plain", "peeking", "attention"]
Scoring = Literal["additive", "dot", "general"]


@dataclass
class Seq2SeqConfig(RecurrentConfig):
    """An encoder–decoder: the encoder's recurrent stack (the shared keys), the token embeddings,
    the decoder and its layers. The decoder runs the same cell with ``hidden * directions`` units
    (the code vector's size)."""

    embedding: int = 32
    decoder: DecoderKind = "plain"
    attention: Scoring = "additive"
    decoder_layers: int = 1

    def check(self) -> None:
        super().check()
        check_at_least("model", self, 1, "embedding", "decoder_layers")


# -- decoder state ------------------------------------------------------------------------------
# The recurrent part of a decoder's state is kept under "rnn.h" (and "rnn.c", ...), the cell's
# state names: laid out (layers, N, H), where every other entry is batch first.
def _rnn(rnn: Recurrent, state: State) -> Any:
    return rnn.spec.carried(tuple(state[f"rnn.{name}"] for name in rnn.spec.state))


def _with_rnn(rnn: Recurrent, state: State, rnn_state: Any) -> State:
    parts = rnn_state if isinstance(rnn_state, tuple) else (rnn_state,)
    return {**state, **{f"rnn.{n}": p for n, p in zip(rnn.spec.state, parts, strict=True)}}


def _bridge(rnn: Recurrent, final: Any, directions: int) -> State:
    """Encoder final state -> decoder initial state: both directions side by side, decoder layer k
    from encoder layer k (the top one for decoder layers beyond the encoder's)."""
    parts = final if isinstance(final, tuple) else (final,)
    state = {}
    for name, part in zip(rnn.spec.state, parts, strict=True):
        stacked, batch, hidden = part.shape  # (layers*directions, B, H)
        part = part.view(stacked // directions, directions, batch, hidden).transpose(1, 2)
        part = part.reshape(stacked // directions, batch, directions * hidden)  # (L, B, D)
        index = torch.arange(rnn.layers, device=part.device).clamp(max=part.shape[0] - 1)
        state[f"rnn.{name}"] = part[index].contiguous()
    return state


@dataclass
class Encoded:
    """What the encoder hands a decoder."""

    memory: Tensor  # (B, S, D) outputs, zero past each source's end
    mask: Tensor  # (B, S) True at real source positions
    final: Any  # the encoder's final state, (layers*directions, B, H) or an (h, c) tuple
    code: Tensor  # (B, D) the code vector: top layer's final hidden state, directions side by side


# -- decoders -----------------------------------------------------------------------------------
class PlainDecoder(nn.Module):
    """The code vector is the input at every step, from a zero state; no feedback."""

    feedback = False

    def __init__(self, size: int, target_vocab: int, inner: RecurrentConfig) -> None:
        super().__init__()
        self.rnn = Recurrent(size, config=inner)
        self.head = nn.Linear(size, target_vocab)

    def start(self, encoded: Encoded) -> State:
        code = encoded.code
        zeros = code.new_zeros(self.rnn.layers, code.shape[0], self.rnn.hidden_size)
        return {"code": code} | {f"rnn.{name}": zeros for name in self.rnn.spec.state}

    def step(self, previous: Tensor, state: State) -> tuple[Tensor, State, None]:
        out, rnn = self.rnn(state["code"][:, None], state=_rnn(self.rnn, state))  # (N, 1, D)
        return self.head(out[:, 0]), _with_rnn(self.rnn, state, rnn), None

    def parallel(self, state: State, previous: Tensor) -> tuple[Tensor, None]:
        # The input is the same at every step: one fused pass, the Keras RepeatVector.
        code = state["code"][:, None].expand(-1, previous.shape[1], -1)  # (B, T, D)
        out, _ = self.rnn(code, state=_rnn(self.rnn, state))
        return self.head(out), None


class PeekingDecoder(nn.Module):
    """Reads the previous token and the code vector at every step, from the encoder's state."""

    feedback = True

    def __init__(
        self, size: int, target_vocab: int, embedding: int, inner: RecurrentConfig
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(target_vocab + 1, embedding)  # + BOS
        self.rnn = Recurrent(embedding + size, config=inner)
        self.head = nn.Linear(size, target_vocab)

    def start(self, encoded: Encoded) -> State:
        return {"code": encoded.code} | _bridge(self.rnn, encoded.final, _directions(encoded))

    def step(self, previous: Tensor, state: State) -> tuple[Tensor, State, None]:
        x = torch.cat([self.embed(previous), state["code"]], dim=-1)[:, None]  # (N, 1, E+D)
        out, rnn = self.rnn(x, state=_rnn(self.rnn, state))
        return self.head(out[:, 0]), _with_rnn(self.rnn, state, rnn), None

    def parallel(self, state: State, previous: Tensor) -> tuple[Tensor, None]:
        code = state["code"][:, None].expand(-1, previous.shape[1], -1)  # (B, T, D)
        x = torch.cat([self.embed(previous), code], dim=-1)
        out, _ = self.rnn(x, state=_rnn(self.rnn, state))
        return self.head(out), None


class Attention(nn.Module):
    """Scores of queries (B, T, D) against a memory (B, S, D); softmax over real positions only."""

    def __init__(self, scoring: Scoring, size: int) -> None:
        super().__init__()
        self.scoring = scoring
        if scoring == "additive":
            self.query = nn.Linear(size, size, bias=False)
            self.key = nn.Linear(size, size)
            self.v = nn.Linear(size, 1, bias=False)
        elif scoring == "general":
            self.key = nn.Linear(size, size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """The memory's side of the scores, computed once per source: W_k m_s (or m_s for dot)."""
        return memory if self.scoring == "dot" else self.key(memory)

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """-> context (B, T, D) and weights (B, T, S), each row summing to 1 over real positions."""
        if self.scoring == "additive":
            hidden = torch.tanh(self.query(query)[:, :, None] + keys[:, None])  # (B, T, S, D)
            scores = self.v(hidden).squeeze(-1)  # (B, T, S)
        else:
            scores = query @ keys.transpose(1, 2)  # (B, T, S)
        weights = scores.masked_fill(~mask[:, None], float("-inf")).softmax(-1)
        return weights @ memory, weights


class AttentionDecoder(nn.Module):
    """Attends over the memory at every step (additive: Bahdanau; dot, general: Luong)."""

    feedback = True

    def __init__(
        self,
        size: int,
        target_vocab: int,
        embedding: int,
        inner: RecurrentConfig,
        scoring: Scoring,
    ) -> None:
        super().__init__()
        self.additive = scoring == "additive"
        self.embed = nn.Embedding(target_vocab + 1, embedding)  # + BOS
        self.rnn = Recurrent(embedding + (size if self.additive else 0), config=inner)
        self.attend = Attention(scoring, size)
        self.combine = nn.Linear(2 * size, size)
        self.head = nn.Linear(size, target_vocab)

    def start(self, encoded: Encoded) -> State:
        return {
            "memory": encoded.memory,
            "keys": self.attend.keys(encoded.memory),
            "mask": encoded.mask,
        } | _bridge(self.rnn, encoded.final, _directions(encoded))

    def _output(self, context: Tensor, out: Tensor) -> Tensor:
        return self.head(torch.tanh(self.combine(torch.cat([context, out], dim=-1))))

    def step(self, previous: Tensor, state: State) -> tuple[Tensor, State, Tensor]:
        memory, keys, mask = state["memory"], state["keys"], state["mask"]
        x = self.embed(previous)[:, None]  # (N, 1, E)
        if self.additive:
            hidden = state[f"rnn.{self.rnn.spec.state[0]}"]  # (layers, N, H)
            query = hidden[-1][:, None]  # s_{t-1}, the top layer's hidden state
            context, weights = self.attend(query, keys, memory, mask)
            out, rnn = self.rnn(torch.cat([x, context], dim=-1), state=_rnn(self.rnn, state))
        else:
            out, rnn = self.rnn(x, state=_rnn(self.rnn, state))  # (N, 1, D)
            context, weights = self.attend(out, keys, memory, mask)
        return self._output(context, out)[:, 0], _with_rnn(self.rnn, state, rnn), weights[:, 0]

    def parallel(self, state: State, previous: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.additive:
            return None  # the query is s_{t-1}: the steps cannot run as one pass
        out, _ = self.rnn(self.embed(previous), state=_rnn(self.rnn, state))  # (B, T, D)
        context, weights = self.attend(out, state["keys"], state["memory"], state["mask"])
        return self._output(context, out), weights


def _directions(encoded: Encoded) -> int:
    parts = encoded.final if isinstance(encoded.final, tuple) else (encoded.final,)
    return encoded.code.shape[-1] // parts[0].shape[-1]


# -- the model ----------------------------------------------------------------------------------
class Seq2Seq(nn.Module):
    """Encoder–decoder over token ids: source (B, S) -> target logits (B, T, target_vocab).

    Args:
        source_vocab: source token ids are ``0..source_vocab-1``.
        target_vocab: output token ids are ``0..target_vocab-1``; the start symbol is ``target_vocab``.
        config: the encoder's stack, the embeddings and the decoder (:class:`Seq2SeqConfig`);
            keyword ``options`` replace single keys of it.
        eos: the end-of-sequence id, where decoding stops; None for fixed-length targets.
    """

    def __init__(
        self,
        source_vocab: int,
        target_vocab: int,
        config: Seq2SeqConfig | None = None,
        eos: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        config = settle(config, Seq2SeqConfig, options)
        for name, value in (("source_vocab", source_vocab), ("target_vocab", target_vocab)):
            if value < 1:
                raise SettingError(f"{name} must be >= 1, got {value}")
        if eos is not None and not 0 <= eos < target_vocab:
            raise SettingError(f"eos must be a target id in [0, {target_vocab}), got {eos}")
        self.config = config
        self.target_vocab, self.bos, self.eos = target_vocab, target_vocab, eos
        self.embed = nn.Embedding(source_vocab, config.embedding)
        self.encoder = Recurrent(config.embedding, config=config)
        size = self.encoder.output_size
        inner = dataclasses.replace(
            config, hidden=size, layers=config.decoder_layers, bidirectional=False
        )
        if config.decoder == "plain":
            self.decoder: PlainDecoder | PeekingDecoder | AttentionDecoder
            self.decoder = PlainDecoder(size, target_vocab, inner)
        elif config.decoder == "peeking":
            self.decoder = PeekingDecoder(size, target_vocab, config.embedding, inner)
        else:
            self.decoder = AttentionDecoder(
                size, target_vocab, config.embedding, inner, config.attention
            )
        if config.init == "keras":  # the lab's Dense and Embedding initialisers
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.Embedding):
                    nn.init.uniform_(module.weight, -0.05, 0.05)

    def encode(self, source: Tensor, lengths: Tensor | None = None) -> Encoded:
        """Source ids (B, S) and their lengths (B,) (None: all S long) -> :class:`Encoded`."""
        memory, final = self.encoder(self.embed(source), lengths)  # (B, S, D)
        steps = torch.arange(source.shape[1], device=source.device)
        mask = (
            torch.ones_like(source, dtype=torch.bool)
            if lengths is None
            else steps < lengths.to(source.device)[:, None]
        )
        return Encoded(memory, mask, final, last_hidden(final, self.encoder.directions))

    def forward(
        self,
        source: Tensor,
        target: Tensor,
        lengths: Tensor | None = None,
        teacher_forcing: float = 1.0,
    ) -> tuple[Tensor, Tensor | None]:
        """Training pass: logits (B, T, V) for the target (B, T), and attention (B, T, S) or None.

        Step t reads the true ``target[:, t-1]`` with probability ``teacher_forcing`` and the
        model's own most likely token otherwise (the start symbol at t = 0).
        """
        state = self.decoder.start(self.encode(source, lengths))
        start = torch.full_like(target[:, 0], self.bos)  # (B,)
        if teacher_forcing >= 1.0 or not self.decoder.feedback:
            previous = torch.cat([start[:, None], target[:, :-1]], dim=1)  # (B, T)
            result = self.decoder.parallel(state, previous)
            if result is not None:
                return result
        previous, logits, weights = start, [], []
        for t in range(target.shape[1]):
            step_logits, state, attention = self.decoder.step(previous, state)
            logits.append(step_logits)
            if attention is not None:
                weights.append(attention)
            own = step_logits.detach().argmax(-1)
            if teacher_forcing >= 1.0:
                previous = target[:, t]
            elif teacher_forcing <= 0.0:
                previous = own
            else:
                truth = torch.rand(own.shape, device=own.device) < teacher_forcing
                previous = torch.where(truth, target[:, t], own)
        return torch.stack(logits, 1), torch.stack(weights, 1) if weights else None

    def _start(self, source: Tensor, lengths: Tensor | None) -> tuple[State, Tensor]:
        state = self.decoder.start(self.encode(source, lengths))
        return state, torch.full_like(source[:, 0], self.bos)

    @property
    def greedy_is_parallel(self) -> bool:
        """Whether greedy decoding is one parallel pass, the training pass's own: a decoder that
        never reads its outputs (the plain one) and no EOS to stop at."""
        return not self.decoder.feedback and self.eos is None

    def greedy(self, source: Tensor, max_len: int, lengths: Tensor | None = None) -> Decoded:
        """Greedy decoding of ``max_len`` steps at most (fewer once every sequence hit EOS)."""
        state, start = self._start(source, lengths)
        if self.greedy_is_parallel:
            # A decoder without feedback, the plain one, always runs in one pass.
            result = self.decoder.parallel(state, start[:, None].expand(-1, max_len))
            assert result is not None
            best, tokens = result[0].log_softmax(-1).max(-1)
            return Decoded(tokens, best.sum(1), None)
        return greedy(self.decoder.step, state, start, max_len, self.eos)

    def beam_search(
        self,
        source: Tensor,
        max_len: int,
        beam_size: int,
        alpha: float = 0.0,
        lengths: Tensor | None = None,
    ) -> Beams:
        """The ``beam_size`` best hypotheses of every source, best first (see :func:`beam_search`)."""
        state, start = self._start(source, lengths)
        return beam_search(self.decoder.step, state, start, max_len, beam_size, self.eos, alpha)
