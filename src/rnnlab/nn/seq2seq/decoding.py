"""Decoding an encoder–decoder: greedy, and beam search with a length penalty, batched over
examples and beams. Both drive a decoder's ``step(previous, state)``; a state is a dict of tensors
(:func:`rnnlab.nn.seq2seq.model.select` reorders it for beams)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

State = dict[str, Tensor]
StepFn = Callable[[Tensor, State], tuple[Tensor, State, Tensor | None]]


def select(state: State, index: Tensor) -> State:
    """Rows ``index`` (N',) of every tensor in ``state``: reorders, repeats or drops hypotheses.

    The recurrent state (``rnn.*`` entries) is laid out (layers, N, H); every other entry is
    batch first.
    """
    return {k: v.index_select(1 if k.startswith("rnn.") else 0, index) for k, v in state.items()}


@dataclass
class Decoded:
    """Greedy decoding of a batch."""

    tokens: Tensor  # (B, T) ids; after EOS, EOS again
    log_probs: Tensor  # (B,) log p of each sequence up to and including its EOS
    attention: Tensor | None  # (B, T, S) weights of an attention decoder, else None


@dataclass
class Beams:
    """The n best hypotheses of every example, best first."""

    tokens: Tensor  # (B, K, T) ids; after EOS, EOS again
    log_probs: Tensor  # (B, K) log p of each hypothesis up to and including its EOS
    scores: Tensor  # (B, K) log_probs / length penalty: the order of the hypotheses
    lengths: Tensor  # (B, K) tokens up to and including EOS (T if none)
    attention: Tensor | None  # (B, K, T, S) or None


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT's ``((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016): alpha 0 ranks by log-probability,
    larger alpha favours longer hypotheses."""
    return ((5.0 + lengths.double()) / 6.0) ** alpha


def greedy(
    step: StepFn, state: State, start: Tensor, max_len: int, eos: int | None = None
) -> Decoded:
    """Feed back the most likely token until every sequence has emitted ``eos`` or ``max_len`` steps.

    ``start`` (B,) holds the first input token of each sequence (the start symbol).
    """
    previous, log_probs = start, torch.zeros(start.shape[0], device=start.device)
    done = torch.zeros_like(start, dtype=torch.bool)
    tokens, weights = [], []
    for _ in range(max_len):
        logits, state, attention = step(previous, state)
        best, previous = logits.log_softmax(-1).max(-1)  # (N,), (N,)
        if eos is not None:
            # A finished sequence goes on emitting EOS at no cost, as a finished beam does.
            previous = previous.masked_fill(done, eos)
            best = best.masked_fill(done, 0.0)
        log_probs = log_probs + best
        tokens.append(previous)
        if attention is not None:
            weights.append(attention)
        if eos is not None:
            done = done | (previous == eos)
            if bool(done.all()):
                break
    return Decoded(torch.stack(tokens, 1), log_probs, torch.stack(weights, 1) if weights else None)


def beam_search(
    step: StepFn,
    state: State,
    start: Tensor,
    max_len: int,
    beam_size: int,
    eos: int | None = None,
    alpha: float = 0.0,
) -> Beams:
    """Keep the ``beam_size`` most probable prefixes of every example, all examples at once.

    Each step extends every live hypothesis by every token and keeps the best ``beam_size`` by
    log-probability; a hypothesis that emitted ``eos`` stays in the beam with its score. The
    survivors are then ranked by ``log_prob / length_penalty(length, alpha)``. ``beam_size=1`` is
    :func:`greedy` exactly.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    batch, k, device = start.shape[0], beam_size, start.device
    state = select(state, torch.arange(batch, device=device).repeat_interleave(k))
    previous = start.repeat_interleave(k)  # (B*K,)
    # Only the first beam is alive at the start, so the first step does not pick k copies of it.
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    done = torch.zeros(batch, k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, k, dtype=torch.long, device=device)
    tokens = torch.zeros(batch, k, 0, dtype=torch.long, device=device)
    history: Tensor | None = None
    rows = torch.arange(batch, device=device)[:, None] * k  # (B, 1)
    for _ in range(max_len):
        logits, state, attention = step(previous, state)
        vocab = logits.shape[-1]
        log_p = logits.log_softmax(-1).view(batch, k, vocab)
        if eos is not None:
            only_eos = torch.full((vocab,), float("-inf"), device=device)
            only_eos[eos] = 0.0
            log_p = torch.where(done[..., None], only_eos, log_p)
        scores, flat = (scores[..., None] + log_p).view(batch, k * vocab).topk(k, dim=1)
        beam, token = flat // vocab, flat % vocab  # (B, K) each
        state = select(state, (rows + beam).view(-1))
        tokens = torch.cat(
            [tokens.gather(1, beam[..., None].expand_as(tokens)), token[..., None]], 2
        )
        was_done = done.gather(1, beam)
        lengths = lengths.gather(1, beam) + (~was_done).long()
        if attention is not None:
            attention = attention.view(batch, k, 1, -1).gather(
                1, beam[..., None, None].expand(-1, -1, 1, attention.shape[-1])
            )  # (B, K, 1, S)
            if history is not None:
                history = history.gather(1, beam[..., None, None].expand_as(history))
                attention = torch.cat([history, attention], 2)
            history = attention
        previous = token.view(-1)
        if eos is not None:
            done = was_done | (token == eos)
            if bool(done.all()):
                break
    normalised = (scores.double() / length_penalty(lengths, alpha)).to(scores.dtype)
    order = normalised.argsort(dim=1, descending=True, stable=True)  # (B, K)
    return Beams(
        tokens.gather(1, order[..., None].expand_as(tokens)),
        scores.gather(1, order),
        normalised.gather(1, order),
        lengths.gather(1, order),
        None if history is None else history.gather(1, order[..., None, None].expand_as(history)),
    )
