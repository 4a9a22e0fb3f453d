"""Learning to add: questions ``"a+b"`` and their sums as padded strings, as the Keras example.

Each operand has a random number of digits, 1 to ``digits`` (so short numbers are as likely as long
ones), each unordered pair {a, b} is used at most once, the question is padded with spaces to
``2*digits+1`` characters and optionally reversed, the answer padded to ``digits+1``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rnnlab.data.text import CharVocab
from rnnlab.errors import RnnlabError

VOCAB = CharVocab(" +0123456789")  # sorted as the example's CharacterTable; id 0 is the pad space
_BATCH = (
    4096  # pairs drawn at a time; fixed, so a larger n extends a smaller one with the same seed
)


@dataclass
class AdditionData:
    questions: list[str]  # each 2*digits+1 characters
    answers: list[str]  # each digits+1 characters
    operands: list[tuple[int, int]]  # (a, b) of each question, in order
    digits: int
    reverse: bool

    @property
    def pairs(self) -> frozenset[tuple[int, int]]:
        """The unordered pairs used, as (smaller, larger): pass them as ``exclude`` to keep them out."""
        return frozenset((min(a, b), max(a, b)) for a, b in self.operands)


def format_question(a: int, b: int, digits: int, reverse: bool) -> str:
    """``"a+b"`` padded with spaces to 2*digits+1 characters, reversed if asked (spaces first)."""
    query = f"{a}+{b}".ljust(2 * digits + 1)
    return query[::-1] if reverse else query


def format_answer(total: int, digits: int) -> str:
    return str(total).ljust(digits + 1)


def _numbers(rng: np.random.Generator, size: int, digits: int) -> np.ndarray:
    # the example's draw: a length of 1..digits, then that many uniform digits
    lengths = rng.integers(1, digits + 1, size)
    return rng.integers(0, 10**digits, size) % 10**lengths


def distinct_pairs(digits: int) -> int:
    """How many unordered pairs of numbers with at most ``digits`` digits exist (12+7 is 7+12)."""
    top = 10**digits
    return top * (top + 1) // 2


def make_addition(
    n: int,
    digits: int = 3,
    reverse: bool = True,
    seed: int = 0,
    exclude: Iterable[tuple[int, int]] = frozenset(),
) -> AdditionData:
    """``n`` questions on distinct unordered pairs, none of them in ``exclude``.

    Asking for most of the pairs that exist is slow (the rarest are drawn last, by rejection); the
    lab asks for 50k of the 500,500 three-digit pairs, a small share.
    """
    if digits < 1:
        raise RnnlabError(f"digits={digits}: expected at least 1")
    top = 10**digits
    seen = {(min(a, b), max(a, b)) for a, b in exclude if max(a, b) < top}
    available = distinct_pairs(digits) - len(seen)
    if n > available:
        raise RnnlabError(
            f"n={n} examples: only {available} distinct pairs of numbers with at most {digits} "
            + ("digits remain outside exclude" if seen else "digits exist")
        )
    rng = np.random.default_rng(seed)
    operands: list[tuple[int, int]] = []
    while len(operands) < n:
        draws = _numbers(rng, 2 * _BATCH, digits).reshape(_BATCH, 2).tolist()
        for a, b in draws:
            key = (min(a, b), max(a, b))
            if key not in seen:
                seen.add(key)
                operands.append((a, b))
                if len(operands) == n:
                    break
    return AdditionData(
        questions=[format_question(a, b, digits, reverse) for a, b in operands],
        answers=[format_answer(a + b, digits) for a, b in operands],
        operands=operands,
        digits=digits,
        reverse=reverse,
    )


def split_addition(
    n_train: int,
    n_val: int,
    digits: int = 3,
    reverse: bool = True,
    seed: int = 0,
    exclude: Iterable[tuple[int, int]] = frozenset(),
) -> tuple[AdditionData, AdditionData]:
    """Train and validation sets drawn together, so that no pair is in both."""
    data = make_addition(n_train + n_val, digits, reverse, seed, exclude)

    def part(s: slice) -> AdditionData:
        return AdditionData(data.questions[s], data.answers[s], data.operands[s], digits, reverse)

    return part(slice(0, n_train)), part(slice(n_train, None))


def encode(strings: Sequence[str]) -> torch.Tensor:
    """Equal-length strings over ``VOCAB`` -> (N, L) int64 (one tensor built, not one per string)."""
    if len({len(s) for s in strings}) > 1:
        raise ValueError("encode needs strings of one length (padded questions or answers)")
    width = len(strings[0]) if strings else 0
    return VOCAB.encode("".join(strings)).view(len(strings), width)


def decode(ids: torch.Tensor) -> list[str]:
    """(N, L) or (L,) ids -> N strings (one for a 1-D input)."""
    return [VOCAB.decode(row) for row in ids.reshape(-1, ids.shape[-1])]


def parse_question(text: str, digits: int) -> tuple[int, int]:
    """A user's ``"a+b"`` (spaces allowed around the numbers) -> (a, b), each of 1 to ``digits`` digits."""
    match = re.fullmatch(rf"\s*([0-9]{{1,{digits}}})\s*\+\s*([0-9]{{1,{digits}}})\s*", text)
    if match is None:
        raise RnnlabError(f"question {text!r}: expected 'a+b' with 1 to {digits} digits each")
    return int(match[1]), int(match[2])
