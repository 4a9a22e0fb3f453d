"""Sequence to sequence on your own pairs: a TSV of ``source<TAB>target`` lines (many-to-many).

Data: the pairs shuffled (``data.split_seed``) and split into train/validation/test; characters as
tokens by default (``data.tokens = "word"`` splits on whitespace); each vocabulary is built from
the training pairs, an unseen token reads as ``<unk>``. Every target ends with ``<eos>``. Without
``data.path`` the task trains on the example shipped with rnnlab, dates in words -> ISO dates.
Model: :class:`rnnlab.nn.Seq2Seq`, an encoder RNN and a ``plain``, ``peeking`` or ``attention``
decoder; teacher forcing ``train.teacher_forcing``; greedy decoding, or beam search with
``model.beam_size`` > 1 and length normalisation ``model.alpha``.
What it learned: exact match (the whole target right) and token accuracy on held-out pairs, a few
validation pairs after every epoch, the attention of a few test pairs; ``rnnlab predict`` translates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnlab.config import check_at_least
from rnnlab.errors import RnnlabError, check_file
from rnnlab.tasks.pairs import EOS, PAD, SPECIALS, UNK, PairsMeta, PairsTask

# Pairs shipped with rnnlab, read when data.path is not set: dates in words -> ISO dates.
EXAMPLE_PAIRS = Path(__file__).parents[1] / "examples" / "dates.tsv"


@dataclass
class PairsData:
    """A TSV of ``source<TAB>target`` lines and how to cut it into tokens and splits."""

    path: str | None = None
    header: bool = False  # true: the file's first line names its columns and is not a pair
    tokens: Literal["char", "word"] = "char"
    lower: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    # The split's shuffle, apart from train.seed: runs of other seeds share a test set.
    split_seed: int = 0
    # Batches are padded to their longest sequence: one stray long line would cost every batch.
    max_tokens: int = 200

    def check(self) -> None:
        check_at_least("data", self, 1, "max_tokens")
        for key in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, key) < 0.5:
                raise RnnlabError(
                    f"config key data.{key} must be in (0, 0.5), got {getattr(self, key)}"
                )


def read_pairs(
    path: str | Path, lower: bool = False, header: bool = False
) -> list[tuple[str, str]]:
    """``source<TAB>target`` lines after a ``header`` line if asked; blank lines are skipped,
    anything else is an error naming the line."""
    path = Path(path)
    check_file(path, "source<TAB>target lines")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise RnnlabError(f"{path}: not UTF-8 text (byte {err.start})") from None
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    pairs = []
    for number, line in numbered[1:] if header else numbered:
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise RnnlabError(f"{path}:{number}: expected source<TAB>target, got {line[:60]!r}")
        source, target = (p.strip().lower() if lower else p.strip() for p in parts)
        pairs.append((source, target))
    if len(pairs) < 3:
        raise RnnlabError(f"{path}: {len(pairs)} pairs; need at least 3 (train, validation, test)")
    return pairs


def _encode(sequences: list[list[str]], vocab: dict[str, int], eos: bool) -> tuple[Tensor, Tensor]:
    """Token lists -> ids (N, L) padded with PAD (EOS appended if asked) and lengths (N,)."""
    ids = [[vocab.get(t, UNK) for t in seq] + ([EOS] if eos else []) for seq in sequences]
    lengths = torch.tensor([len(s) for s in ids])
    out = torch.full((len(ids), int(lengths.max())), PAD, dtype=torch.long)
    for i, s in enumerate(ids):
        out[i, : len(s)] = torch.tensor(s)
    return out, lengths


class TokenPairsMeta(PairsMeta):
    """``model.json`` of a seq2seq run: also its tokens, in id order."""

    source_tokens: list[str]
    target_tokens: list[str]


class Pairs(PairsTask):
    name = "seq2seq"
    summary = "your own source<TAB>target pairs (encoder–decoder, attention, beam search)"
    Data = PairsData
    Meta = TokenPairsMeta

    def _split_tokens(self, text: str) -> list[str]:
        return text.split() if self.cfg.data.tokens == "word" else list(text)

    def load(self) -> None:
        d = self.cfg.data
        pairs = read_pairs(d.path or EXAMPLE_PAIRS, d.lower, d.header)
        random.Random(d.split_seed).shuffle(pairs)
        n_val = max(1, round(len(pairs) * d.val_fraction))
        n_test = max(1, round(len(pairs) * d.test_fraction))
        parts = {
            "test": pairs[:n_test],
            "val": pairs[n_test : n_test + n_val],
            "train": pairs[n_test + n_val :],
        }
        tokens = {
            name: ([self._split_tokens(s) for s, _ in p], [self._split_tokens(t) for _, t in p])
            for name, p in parts.items()
        }
        for sides in tokens.values():
            for side, sequences in zip(("source", "target"), sides, strict=True):
                longest = max(sequences, key=len)
                if len(longest) > d.max_tokens:
                    text = ("" if d.tokens == "char" else " ").join(longest)
                    raise RnnlabError(
                        f"{d.path}: a {side} of {len(longest)} tokens ({text[:30]!r}...), more "
                        f"than config key data.max_tokens = {d.max_tokens}"
                    )
        source_vocab = SPECIALS + tuple(sorted({t for s in tokens["train"][0] for t in s}))
        target_vocab = SPECIALS + tuple(sorted({t for s in tokens["train"][1] for t in s}))
        source_ids = {t: i for i, t in enumerate(source_vocab)}
        target_ids = {t: i for i, t in enumerate(target_vocab)}
        self.splits = {}
        for name, (sources, targets) in tokens.items():
            x, lengths = _encode(sources, source_ids, eos=False)
            y, _ = _encode(targets, target_ids, eos=True)
            self.splits[name] = {"x": x, "lengths": lengths, "y": y}
        self.meta = {
            "source_vocab": len(source_vocab),
            "target_vocab": len(target_vocab),
            "eos": EOS,
            "pad": PAD,
            # Decoding stops at EOS; this bounds it: the longest training target, EOS, and a margin.
            "max_len": int(self.splits["train"]["y"].shape[1] * 1.5) + 1,
            "source_tokens": list(source_vocab),
            "target_tokens": list(target_vocab),
        }

    def prepare_training(self) -> str | None:
        if self.cfg.data.path is None:
            return (
                f"data.path is not set: training on the example shipped with rnnlab, "
                f"{EXAMPLE_PAIRS} (dates in words -> ISO dates)"
            )
        return None

    def _join(self, tokens: list[str]) -> str:
        return (" " if self.cfg.data.tokens == "word" else "").join(tokens)

    def source_tokens(self, ids: Tensor) -> list[str]:
        return [self.meta["source_tokens"][i] for i in ids.tolist() if i != PAD]

    def target_tokens(self, ids: Tensor) -> list[str]:
        out = []
        for i in ids.tolist():
            out.append(self.meta["target_tokens"][i])
            if i == EOS:
                break
        return out

    def source_text(self, ids: Tensor) -> str:
        return self._join(self.source_tokens(ids))

    def target_text(self, ids: Tensor) -> str:
        return self._join([t for t in self.target_tokens(ids) if t not in SPECIALS])

    def predict(self, model: nn.Module, inputs: list[str]) -> list[dict[str, Any]]:
        vocab = {t: i for i, t in enumerate(self.meta["source_tokens"])}
        sources = []
        for text in inputs:
            text = text.strip().lower() if self.cfg.data.lower else text.strip()
            if not self._split_tokens(text):
                raise RnnlabError(f"input {text!r} is empty; nothing to translate")
            sources.append(self._split_tokens(text))
        x, lengths = _encode(sources, vocab, eos=False)
        answers = self._answer(model, x.to(self.device), lengths.to(self.device))
        return [
            {"source": text, "target": self.target_text(ids), "probability": p}
            for text, (ids, p) in zip(inputs, answers, strict=True)
        ]
