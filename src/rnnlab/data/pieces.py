"""Texts as BERT's word pieces: the tokens a pretrained transformer reads (``data.pieces``).

A word vocabulary of the training tweets knows 5000 words and nothing of the rest; word pieces
split any word into known parts (``"unfriendly"`` -> ``un ##friend ##ly``), so no text is lost
and a student reads exactly what its transformer teacher read (:mod:`benchmarks.transformer_teacher`).
The rules are BERT's uncased ones, as all-MiniLM-L6-v2 uses them: Unicode clean-up, lower case,
accents stripped, punctuation split off, then the longest known piece first. The work is done by
Hugging Face's ``tokenizers`` (Rust), the library the transformers themselves tokenize with.

Ids: 0 is padding, piece ``k`` of the vocabulary file (line ``k + 1``) is id ``k + 1``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rnnlab.errors import RnnlabError

UNK = "[UNK]"  # BERT's unknown piece: a word no sequence of pieces spells


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise RnnlabError(
            "word pieces (data.pieces) need the tokenizers library: "
            "pip install 'rnnlab[pieces]' (or pip install tokenizers)"
        ) from None
    return tokenizers


class WordPieces:
    """A WordPiece vocabulary and its tokenizer; saved beside a model as JSON."""

    def __init__(self, pieces: Sequence[str]) -> None:
        tk = _tokenizers()
        self.pieces = list(pieces)
        model = tk.models.WordPiece(
            vocab={p: i + 1 for i, p in enumerate(self.pieces)}, unk_token=UNK
        )
        self.tokenizer = tk.Tokenizer(model)
        self.tokenizer.normalizer = tk.normalizers.BertNormalizer(lowercase=True)
        self.tokenizer.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()

    @classmethod
    def read(cls, path: str | Path) -> WordPieces:
        """A ``vocab.txt`` as BERT ships it: one piece per line, ``[UNK]`` among them."""
        path = Path(path)
        if not path.is_file():
            raise RnnlabError(f"config key data.pieces: {path} is not a file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise RnnlabError(
                f"{path}: not UTF-8 text (byte {err.start}); expected vocab.txt"
            ) from None
        seen: dict[str, int] = {}
        for number, piece in enumerate(lines, 1):
            if not piece or any(c.isspace() for c in piece):
                raise RnnlabError(
                    f"{path}: line {number}: {piece!r} is not a word piece (one piece per line, "
                    "no spaces)"
                )
            if piece in seen:
                raise RnnlabError(
                    f"{path}: line {number}: piece {piece!r} repeats line {seen[piece]}"
                )
            seen[piece] = number
        if UNK not in seen:
            raise RnnlabError(f"{path}: no {UNK} line; a WordPiece vocabulary needs one")
        return cls(lines)

    def __len__(self) -> int:
        return len(self.pieces) + 1  # and the padding id 0

    def encode(self, text: str) -> list[int]:
        """Raw text -> piece ids (empty only for a text of spaces and control characters)."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Many texts at once, in parallel threads."""
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encoded]

    def decode(self, ids: Sequence[int]) -> str:
        """Piece ids -> the pieces, space-separated (padding skipped)."""
        return " ".join(self.pieces[i - 1] for i in ids if i != 0)

    def to_json(self) -> str:
        """The piece list, as ``model.json`` keeps it (read back by ``encoder_from_json``)."""
        return json.dumps({"pieces": self.pieces})
