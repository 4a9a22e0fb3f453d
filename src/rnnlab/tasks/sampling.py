"""Sampling text from a character language model: temperature, greedy and top-k.

The recurrent state is carried from one character to the next, so generating N characters costs N
cell steps. (The lab re-reads its whole 50-character window for every new character: 50 steps per
character.) Several temperatures are sampled side by side as rows of one batch, after reading the
prime once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnlab.data.text import CharVocab
from rnnlab.errors import RnnlabError
from rnnlab.nn import CharLM
from rnnlab.nn.recurrent import State

# Characters one call writes at most: a minute or two of a CPU, a few MB.
LENGTH_LIMIT = 1_000_000


@dataclass
class Sample:
    """One generated text: the prime it continues, the temperature, and the new characters."""

    prime: str
    temperature: float
    text: str


def random_prime(vocab: CharVocab, length: int, generator: torch.Generator) -> str:
    """``length`` characters drawn uniformly from the vocabulary: the lab's random seed."""
    ids = torch.randint(len(vocab), (length,), generator=generator)
    return vocab.decode(ids)


def check_prime(prime: str, vocab: CharVocab) -> None:
    """An empty prime, or one with characters outside the vocabulary, is an error listing them."""
    if not prime:
        raise RnnlabError("the prime is empty: give at least one character to start from")
    missing = sorted(set(prime) - set(vocab.chars))
    if missing:
        raise RnnlabError(
            f"the prime has characters outside the model's vocabulary: "
            f"{', '.join(map(repr, missing))} (the vocabulary is {vocab.chars!r})"
        )


def next_ids(
    logits: Tensor, temperatures: Tensor, top_k: int | None, generator: torch.Generator
) -> Tensor:
    """Draw one id per row of ``logits`` (K, V); a row with temperature 0 takes the argmax."""
    greedy = logits.argmax(-1)  # (K,)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (K, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    # Temperature divides the log-probabilities (the lab's log(p) / T), so 1 samples the model.
    scaled = logits / temperatures.clamp_min(1e-6)[:, None]  # (K, V)
    # Inverse-CDF draw: one uniform per row (torch.multinomial costs more than the cell step).
    cdf = scaled.softmax(-1).cumsum(-1)  # (K, V)
    u = torch.rand(len(cdf), 1, generator=generator, device=cdf.device) * cdf[:, -1:]  # (K, 1)
    drawn = torch.searchsorted(cdf, u).squeeze(1).clamp_max(cdf.shape[-1] - 1)  # (K,)
    return torch.where(temperatures > 0, drawn, greedy)


def check_options(
    temperatures: Sequence[float], length: int, lines: int | None, top_k: int | None
) -> None:
    """What :func:`generate` takes: counts of at least 1, ``length`` of at most
    :data:`LENGTH_LIMIT`, temperatures finite and >= 0; else a one-line error naming the option."""
    for name, value in (("length", length), ("lines", lines), ("top_k", top_k)):
        if value is not None and value < 1:
            raise RnnlabError(f"{name} must be >= 1, got {value}")
    if length > LENGTH_LIMIT:
        raise RnnlabError(f"length must be at most {LENGTH_LIMIT:,} characters, got {length:,}")
    if not temperatures or not all(0 <= t < math.inf for t in temperatures):  # NaN fails too
        raise RnnlabError(
            f"temperatures must be finite and >= 0 (0 is greedy), got {list(temperatures)}"
        )


def _repeat(state: State, rows: int) -> State:
    """A batch-1 recurrent state (layers, 1, H), or an LSTM's (h, c), as ``rows`` copies."""
    if isinstance(state, tuple):
        return tuple(s.repeat(1, rows, 1) for s in state)
    return state.repeat(1, rows, 1)


@contextlib.contextmanager
def _without_onednn() -> Iterator[None]:
    """Run recurrent layers on PyTorch's native CPU kernels for a while.

    oneDNN lays a layer's weights out anew on every call: cheap for a whole sequence, many times
    the matmul itself for one step, and sampling calls once per step.
    """
    enabled = bool(torch.backends.mkldnn.enabled)
    setattr(torch.backends.mkldnn, "enabled", False)  # noqa: B010 (a module property mypy reads wrongly)
    try:
        yield
    finally:
        setattr(torch.backends.mkldnn, "enabled", enabled)  # noqa: B010


@torch.inference_mode()
@_without_onednn()
def generate(
    model: CharLM,
    vocab: CharVocab,
    temperatures: Sequence[float] = (1.0,),
    prime: str | None = None,
    length: int = 1000,
    lines: int | None = None,
    top_k: int | None = None,
    seed: int = 0,
    prime_length: int = 50,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """Continue ``prime`` once per temperature; the same arguments give the same texts.

    Args:
        model: a trained :class:`rnnlab.models.CharLM`.
        vocab: its characters.
        temperatures: one text each; 0 is greedy (always the most likely character).
        prime: the text to continue; None draws ``prime_length`` random characters as the lab.
        length: at most this many new characters.
        lines: stop a text once it has written this many newlines (None: ``length`` only).
        top_k: sample among the k most likely characters only (None: all).
        seed: seeds the random prime and every draw.
        prime_length: the random prime's length.
        progress: called as ``progress(done, length)`` every few hundred characters.
    """
    check_options(temperatures, length, lines, top_k)
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    if prime is None:
        prime = random_prime(vocab, prime_length, torch.Generator().manual_seed(seed))
    check_prime(prime, vocab)
    was_training = model.training
    model.eval()
    rows = len(temperatures)
    temps = torch.tensor(temperatures, dtype=torch.float32, device=device)  # (K,)
    # Read the prime once, then give every temperature its own copy of the state.
    logits, state = model(vocab.encode(prime).to(device)[None], last_only=True)  # (1, V)
    logits = logits.float().expand(rows, -1)  # (K, V)
    state = _repeat(state, rows)
    newline = vocab.ids.get("\n", -1)
    out = torch.empty(rows, length, dtype=torch.int64, device=device)  # (K, length)
    written = torch.zeros(rows, dtype=torch.int64, device=device)  # (K,) newlines so far
    steps = length
    for t in range(length):
        if t:
            logits, state = model(out[:, t - 1 : t], state, last_only=True)  # one cell step
            logits = logits.float()
        out[:, t] = next_ids(logits, temps, top_k, generator)
        if progress is not None and t % 256 == 255:
            progress(t + 1, length)
        if lines is not None:
            written += out[:, t] == newline
            if bool((written >= lines).all()):  # a sync per character, only with a line limit
                steps = t + 1
                break
    texts = []
    for row in out[:, :steps].cpu():
        if lines is not None:
            # Cut after this row's own last allowed newline: rows stop at different characters.
            done = ((row == newline).cumsum(0) >= lines).nonzero()
            row = row[: int(done[0]) + 1] if len(done) else row
        texts.append(vocab.decode(row))
    model.train(was_training)
    return [Sample(prime, float(t), text) for t, text in zip(temperatures, texts, strict=True)]
