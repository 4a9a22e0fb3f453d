"""Text classification from a CSV with a text and a label column (the lab's airline tweets).

Words are cleaned as the lab does (letters only, lower case, ``@mentions`` dropped) and numbered by
frequency in the TRAINING split only (the lab counts all tweets, test included). Ids: 0 is padding,
then ``<unk>`` when ``oov="unk"``, then words from the most frequent; ties go alphabetically.
Or texts are read as a pretrained transformer's word pieces (:mod:`rnnlab.data.pieces`).
A transfer set (:func:`load_transfer`) holds texts a teacher labelled with class probabilities.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np

from rnnlab.data.pieces import WordPieces
from rnnlab.data.table import read_csv
from rnnlab.errors import RnnlabError
from rnnlab.schema import json_entries

SPLIT = (0.8, 0.1, 0.1)  # train, validation, test: the lab's proportions
PAD, UNK = "<pad>", "<unk>"


def clean(text: str) -> list[str]:
    """The lab's ``tweet_to_words``: keep letters and @, lower-case, drop words starting with @."""
    words = re.sub("[^a-zA-Z@]", " ", text).lower().split()
    return [w for w in words if not w.startswith("@")]


class _WordsJSON(TypedDict):
    words: list[str]
    unk: bool


class _PiecesJSON(TypedDict):
    pieces: list[str]


@dataclass
class Vocabulary:
    """Word ids for an embedding table of ``len(vocab)`` rows; save it beside a model with JSON."""

    words: list[str]  # in id order, after the reserved ids
    unk: bool = False  # True: unknown words map to the <unk> id; False: they are dropped
    ids: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ids = {w: i for i, w in enumerate(self.reserved + self.words)}

    @property
    def reserved(self) -> list[str]:
        return [PAD, UNK] if self.unk else [PAD]

    @classmethod
    def build(cls, documents: Iterable[list[str]], num_words: int, unk: bool = False) -> Vocabulary:
        """The ``num_words`` most frequent words of cleaned ``documents``."""
        counts = Counter(w for doc in documents for w in doc)
        ranked = sorted(counts, key=lambda w: (-counts[w], w))  # ties: alphabetical, not file order
        return cls(ranked[:num_words], unk)

    def __len__(self) -> int:
        return len(self.ids)

    def encode_words(self, words: Iterable[str]) -> list[int]:
        if self.unk:
            return [self.ids.get(w, 1) for w in words]
        return [self.ids[w] for w in words if w in self.ids]

    def encode(self, text: str) -> list[int]:
        """Raw text -> ids, cleaned as the training tweets."""
        return self.encode_words(clean(text))

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """Many raw texts -> ids (as :meth:`WordPieces.encode_batch`)."""
        return [self.encode(text) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        words = self.reserved + self.words
        return " ".join(words[i] for i in ids if i != 0)

    def to_json(self) -> str:
        return json.dumps({"words": self.words, "unk": self.unk})

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """The vocabulary :meth:`to_json` wrote; anything else raises :class:`rnnlab.schema.Mismatch`."""
        data = json_entries(text, _WordsJSON)
        return cls(list(data["words"]), data["unk"])


def encoder_from_json(text: str) -> Vocabulary | WordPieces:
    """A saved model's text encoder: its word vocabulary, or its word pieces."""
    try:
        pieces = isinstance(text, str) and "pieces" in json.loads(text)
    except (json.JSONDecodeError, TypeError):
        pieces = False  # Vocabulary.from_json names what is wrong
    if pieces:
        return WordPieces(json_entries(text, _PiecesJSON)["pieces"])
    return Vocabulary.from_json(text)


def pad_right(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Id sequences -> (N, T) int64 ids padded on the right with 0 to the longest, and the (N,)
    true lengths."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    tokens = np.zeros((len(sequences), lengths.max(initial=0)), dtype=np.int64)
    for row, seq in zip(tokens, sequences, strict=True):
        row[: len(seq)] = seq
    return tokens, lengths


@dataclass
class TokenSplit:
    """One split: word ids padded on the right with 0, the true lengths, and class ids."""

    tokens: np.ndarray  # (N, T) int64, T = the longest sequence of this split
    lengths: np.ndarray  # (N,) int64, >= 1
    labels: np.ndarray  # (N,) int64 in 0..K-1
    rows: np.ndarray  # (N,) int64, each text's data row in the file (0 = the row after the header)

    @classmethod
    def pack(cls, sequences: list[list[int]], labels: np.ndarray, rows: np.ndarray) -> TokenSplit:
        tokens, lengths = pad_right(sequences)
        return cls(tokens, lengths, labels.astype(np.int64), rows.astype(np.int64))


@dataclass
class TextClassificationData:
    train: TokenSplit
    val: TokenSplit
    test: TokenSplit
    vocab: Vocabulary | WordPieces  # words: built from the training split only
    classes: tuple[str, ...]  # label names; class id k is classes[k] (sorted)
    dropped_empty: int  # texts with no word left after cleaning, dropped before splitting
    dropped_oov: dict[
        str, int
    ]  # per split: texts whose words are all out of vocabulary (oov="drop")


def _split(y: np.ndarray, how: str, seed: int) -> list[np.ndarray]:
    """Row indices of train, validation and test."""
    if how == "ordered":
        # The lab's: first 80 % train, then half of the rest each. The file is sorted by airline,
        # so the test set holds airlines the training set hardly sees.
        a = int(len(y) * SPLIT[0])
        b = a + int((len(y) - a) * 0.5)
        return [np.arange(a), np.arange(a, b), np.arange(b, len(y))]
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for k in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == k))
        a = round(len(rows) * SPLIT[0])
        b = a + round(len(rows) * SPLIT[1])
        for part, chunk in zip(parts, (rows[:a], rows[a:b], rows[b:]), strict=True):
            part.append(chunk)
    return [rng.permutation(np.concatenate(p)) for p in parts]


def check_classes(path: Path, column: str, classes: Sequence[str]) -> None:
    """A classifier needs two classes or more, and labels that differ in more than their case."""
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise RnnlabError(
            f"{path}: column '{column}' holds {found}; a classifier needs at least two labels"
        )
    folded: dict[str, str] = {}
    for name in classes:
        if name.casefold() in folded:
            raise RnnlabError(
                f"{path}: column '{column}' holds both {folded[name.casefold()]!r} and {name!r}; "
                "labels that differ only in case would be two classes: write them alike"
            )
        folded[name.casefold()] = name


def load_tweets(
    path: str | Path,
    num_words: int = 5000,
    split: str = "stratified",
    seed: int = 0,
    oov: str = "drop",
    text_column: str = "text",
    label_column: str = "twsentiment",
    pieces: WordPieces | None = None,
) -> TextClassificationData:
    """Any CSV with a header, a text column and a label column, as padded id sequences.

    ``split="stratified"``: 80/10/10 of every class, shuffled with ``seed``; ``"ordered"``: the lab's
    split of the file order. ``oov``: ``"drop"`` unknown words (the lab) or map them to ``"unk"``.
    ``pieces``: read the raw texts as these word pieces instead of words (``num_words`` and ``oov``
    unused). Either way a text with no letters is left out before the split, so words and pieces
    split the same texts alike: pieces read exactly the texts words read with ``oov="unk"``.
    """
    if split not in ("stratified", "ordered"):
        raise RnnlabError(f"split={split!r}: expected 'stratified' or 'ordered'")
    if oov not in ("drop", "unk"):
        raise RnnlabError(f"oov={oov!r}: expected 'drop' or 'unk'")
    path = Path(path)
    rows = read_csv(path, f"a CSV with columns '{text_column}' and '{label_column}'")
    (_, header), body = rows[0], rows[1:]
    for name in (text_column, label_column):
        if name not in header:
            known = ", ".join(repr(h) for h in header if h)
            raise RnnlabError(f"{path}: no column '{name}' in the header, columns: {known}")
    t, c = header.index(text_column), header.index(label_column)
    for line, fields in body:
        if not fields[c].strip():
            raise RnnlabError(f"{path}: line {line}, column '{label_column}': empty label")
    documents = [clean(fields[t]) for _, fields in body]
    kept = np.array([i for i, words in enumerate(documents) if words], dtype=np.int64)
    if kept.size == 0:
        raise RnnlabError(f"{path}: no text with words in column '{text_column}'")
    classes = tuple(sorted({fields[c].strip() for _, fields in body}))
    check_classes(path, label_column, classes)
    index = {name: k for k, name in enumerate(classes)}
    documents = [documents[i] for i in kept]
    y = np.array([index[body[i][1][c].strip()] for i in kept], dtype=np.int64)

    parts = _split(y, split, seed)
    unseen = sorted((set(y[parts[1]]) | set(y[parts[2]])) - set(y[parts[0]]))
    if unseen:
        row = kept[next(i for p in parts[1:] for i in p if y[i] == unseen[0])]
        raise RnnlabError(
            f"{path}: line {body[row][0]}: label {classes[unseen[0]]!r} is in the held-out texts "
            f"but never in the training split ({split}); give it more rows or use the other split"
        )
    vocab: Vocabulary | WordPieces
    if pieces is None:
        vocab = Vocabulary.build((documents[i] for i in parts[0]), num_words, unk=oov == "unk")
        encoded = [vocab.encode_words(words) for words in documents]
    else:
        vocab = pieces
        encoded = pieces.encode_batch([body[i][1][t] for i in kept])
    splits: list[TokenSplit] = []
    dropped: dict[str, int] = {}
    for name, idx in zip(("train", "val", "test"), parts, strict=True):
        sequences = [encoded[i] for i in idx]
        keep = np.array([len(s) > 0 for s in sequences], dtype=bool)
        dropped[name] = int((~keep).sum())
        splits.append(TokenSplit.pack([s for s in sequences if s], y[idx][keep], kept[idx][keep]))
    train, val, test = splits
    return TextClassificationData(
        train, val, test, vocab, classes, dropped_empty=len(body) - len(kept), dropped_oov=dropped
    )


def load_transfer(
    path: str | Path, classes: tuple[str, ...], encoder: Vocabulary | WordPieces
) -> tuple[TokenSplit, np.ndarray, int]:
    """A transfer set: a CSV with a ``text`` column and one column per class holding a teacher's
    probability of it (written by ``benchmarks/transformer_teacher.py``).

    Returns the texts encoded as ``encoder`` reads them (labels: each text's likeliest class), the
    (N, classes) probabilities, and how many texts were left out with nothing to read.
    """
    path = Path(path)
    if not path.is_file():
        raise RnnlabError(f"config key data.transfer: {path} is not a file")
    columns = ("text", *classes)
    rows = read_csv(path, f"a CSV with columns {', '.join(map(repr, columns))}")
    (_, header), body = rows[0], rows[1:]
    if sorted(header) != sorted(columns):
        raise RnnlabError(
            f"{path}: columns {', '.join(map(repr, header))}; expected 'text' and one probability "
            f"per class: {', '.join(map(repr, classes))}"
        )
    if not body:
        raise RnnlabError(f"{path}: no texts below the header")
    t = header.index("text")
    at = [header.index(c) for c in classes]
    for line, fields in body:
        if not fields[t].strip():
            raise RnnlabError(f"{path}: line {line}, column 'text': empty text")
    cells = np.array([[fields[c] for c in at] for _, fields in body])
    try:  # all at once; one cell at a time only to find a bad one
        probs = cells.astype(np.float64)
    except ValueError:
        probs = np.vectorize(_number, otypes=[np.float64])(cells)
    bad = ~((probs >= 0.0) & (probs <= 1.0))  # NaN and words too
    if bad.any():
        n, k = np.argwhere(bad)[0]
        raise RnnlabError(
            f"{path}: line {body[n][0]}, column '{classes[k]}': {cells[n, k]!r} is not a "
            "probability (a number from 0 to 1)"
        )
    off = np.flatnonzero(np.abs(probs.sum(1) - 1.0) > 1e-3)
    if off.size:
        n = off[0]
        raise RnnlabError(
            f"{path}: line {body[n][0]}: the class probabilities sum to {probs[n].sum():.6g}, not 1"
        )
    probs = probs.astype(np.float32)
    sequences = encoder.encode_batch([fields[t] for _, fields in body])
    keep = np.array([len(s) > 0 for s in sequences], dtype=bool)
    if not keep.any():
        raise RnnlabError(f"{path}: no text has a word of the model's vocabulary")
    rows_kept = np.flatnonzero(keep)
    split = TokenSplit.pack(
        [s for s in sequences if s], probs[keep].argmax(1), rows_kept.astype(np.int64)
    )
    return split, probs[keep], int((~keep).sum())


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")
