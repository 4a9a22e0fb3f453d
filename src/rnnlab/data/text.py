"""Character corpora for language models: a vocabulary, the lab's windows, and streams for truncated BPTT.

The last 10 % of the text is held out for validation: neither windows nor streams are built from it
unless asked, so no training example reads a validation character.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import torch

from rnnlab.errors import RnnlabError, check_file
from rnnlab.schema import Mismatch, json_entries


class _CharsJSON(TypedDict):
    chars: str


@dataclass
class CharVocab:
    """Character ids: id i is ``chars[i]`` (sorted, as the lab's ``char_indices``)."""

    chars: str
    ids: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def of(cls, text: str) -> CharVocab:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """(len(text),) int64; a character outside the vocabulary is an error naming it."""
        try:
            return torch.tensor([self.ids[c] for c in text], dtype=torch.int64)
        except KeyError as err:
            raise RnnlabError(f"character {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        return "".join(self.chars[i] for i in torch.as_tensor(ids).tolist())

    def to_json(self) -> str:
        return json.dumps({"chars": self.chars})

    @classmethod
    def from_json(cls, text: str) -> CharVocab:
        """The vocabulary :meth:`to_json` wrote; anything else raises :class:`rnnlab.schema.Mismatch`."""
        chars = json_entries(text, _CharsJSON)["chars"]
        if len(set(chars)) != len(chars):
            raise Mismatch("chars", "distinct characters", chars)
        return cls(chars)


@dataclass
class Corpus:
    text: str
    vocab: CharVocab  # from the whole text, so validation can be encoded (it holds no statistics)
    train: torch.Tensor  # (L_train,) int64, the text's start (90 % by default)
    val: torch.Tensor  # (L_val,) int64, the next ``val_fraction`` (the last 10 % by default)
    test: torch.Tensor  # (L_test,) int64, the last ``test_fraction`` (none by default, the lab's)


def read_text(path: str | Path) -> str:
    """A UTF-8 text file, plain or gzip (``.gz``), without byte-order marks."""
    path = Path(path)
    check_file(path, "a text file, plain or .gz")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8")
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # bad header, cut short, corrupt data
        raise RnnlabError(f"{path}: truncated or corrupt gzip ({err})") from None
    except UnicodeDecodeError as err:
        raise RnnlabError(
            f"{path}: not UTF-8 text (byte {err.start}), expected a text file"
        ) from None
    except OSError as err:
        raise RnnlabError(f"{path}: cannot be read ({err.strerror})") from None
    # The poetry files start with a BOM: no character of the poem (the lab made it a space).
    return text.replace("\ufeff", "")


def load_corpus(
    path: str | Path, lower: bool = True, val_fraction: float = 0.1, test_fraction: float = 0.0
) -> Corpus:
    """A text file as character ids, lower-cased as the lab by default: the text's start for
    training, then ``val_fraction`` of the characters for validation, then ``test_fraction`` for
    the test (in reading order, so no held-out passage overlaps the training text)."""
    text = read_text(path)
    if lower:
        text = text.lower()
    if len(text.strip()) == 0:
        raise RnnlabError(f"{path}: no text, expected a non-empty text file")
    vocab = CharVocab.of(text)
    ids = vocab.encode(text)
    test_cut = len(text) - int(len(text) * test_fraction)
    cut = int(len(text) * (1 - val_fraction - test_fraction))
    if not 0 < cut < test_cut <= len(text):
        raise RnnlabError(
            f"{path}: {len(text)} characters cannot be split with val_fraction={val_fraction}"
            f" and test_fraction={test_fraction}"
        )
    return Corpus(text, vocab, ids[:cut], ids[cut:test_cut], ids[test_cut:])


def char_windows(
    ids: torch.Tensor, maxlen: int = 50, step: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lab's examples: windows ``ids[i : i+maxlen]`` (N, maxlen) int64 every ``step``
    characters, each with its next character ``ids[i+maxlen]`` (N,) int64."""
    if len(ids) <= maxlen:
        raise RnnlabError(
            f"windows of maxlen={maxlen} need more than {maxlen} characters, got {len(ids)}"
        )
    x = ids[:-1].unfold(0, maxlen, step)  # starts 0, step, … while a next character remains
    starts = torch.arange(0, len(x) * step, step)
    return x, ids[starts + maxlen]


def char_streams(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The text cut into ``batch_size`` contiguous streams, (batch_size, L+1) int64.

    Stream b is ``ids[b*L : (b+1)*L + 1]``: consecutive streams share one boundary character, so every
    next-character pair of ``ids[: batch_size*L + 1]`` is predicted exactly once per epoch.
    """
    length = (len(ids) - 1) // batch_size
    if length < 1:
        raise RnnlabError(f"batch_size={batch_size} streams need more than {batch_size} characters")
    starts = torch.arange(batch_size) * length
    return ids[starts[:, None] + torch.arange(length + 1)]


def stream_chunks(streams: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of truncated-BPTT chunks: input (B, <=bptt) and target = input shifted by one.

    Feed them in order and carry the hidden state from one chunk to the next: row b continues row b.
    """
    length = streams.shape[1] - 1
    for i in range(0, length, bptt):
        n = min(bptt, length - i)
        yield streams[:, i : i + n], streams[:, i + 1 : i + 1 + n]
