"""Lab task 5: learning to add. ``"535+61"`` in, ``"596"`` out, one character at a time (many-to-many).

Data: questions on distinct pairs of numbers with 1 to ``digits`` digits, padded with spaces and
reversed (the encoder then reads the ones digits first); answers padded to ``digits + 1``
characters. Validation pairs are held out of training, and the test pairs are fresh ones never seen
in training or validation.
Model: an LSTM encoder reads the question; at the lab's settings the ``plain`` decoder (the Keras
example: the code vector repeated ``digits + 1`` times into a decoder LSTM and a softmax per step).
What it learned: exact match (the whole answer right; always giving the most frequent training answer
scores ``majority_exact_match``) and character accuracy; after every epoch a few
validation questions as ``Q 535+61  T 596  ✓ 596``; ``rnnlab predict RUN_DIR "123+45"`` answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from rnnlab.config import check_at_least, check_share
from rnnlab.data.addition import (
    VOCAB,
    decode,
    distinct_pairs,
    encode,
    format_question,
    make_addition,
    parse_question,
    split_addition,
)
from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import Verdict
from rnnlab.tasks.metrics import clearly_above
from rnnlab.tasks.pairs import PairsMeta, PairsTask


@dataclass
class AdditionSettings:
    """How many questions, of how many digits, and how they are written."""

    examples: int = 50000
    digits: int = 3
    reverse: bool = True
    val_fraction: float = 0.1
    test_examples: int = 5000

    def check(self) -> None:
        check_at_least("data", self, 2, "examples")
        check_at_least("data", self, 1, "digits", "test_examples")
        if self.digits > 18:  # the sum of two 18-digit numbers still fits in an int64
            raise RnnlabError(f"config key data.digits must be <= 18, got {self.digits}")
        check_share("data.val_fraction", self.val_fraction)
        pairs = distinct_pairs(self.digits)
        if self.examples + self.test_examples > pairs:
            raise RnnlabError(
                f"config keys data.examples ({self.examples}) + data.test_examples "
                f"({self.test_examples}) ask for more distinct questions than the {pairs:,} pairs "
                f"of numbers with at most data.digits = {self.digits} digits; ask for fewer"
            )


class AdditionMeta(PairsMeta):
    """``model.json`` of an addition run: also how questions are written."""

    digits: int
    reverse: bool


class Addition(PairsTask):
    name = "addition"
    summary = "learning to add: 'a+b' -> sum, character by character (encoder–decoder)"
    Data = AdditionSettings
    Meta = AdditionMeta
    accuracy = "char_accuracy"

    def load(self) -> None:
        d = self.cfg.data
        n_val = max(1, int(d.examples * d.val_fraction))
        seed = self.cfg.train.seed
        train, val = split_addition(d.examples - n_val, n_val, d.digits, d.reverse, seed)
        # Fresh pairs: none of them was seen in training or validation.
        test = make_addition(
            d.test_examples, d.digits, d.reverse, seed + 1, train.pairs | val.pairs
        )
        self.splits = {
            name: {"x": encode(part.questions), "y": encode(part.answers)}
            for name, part in (("train", train), ("val", val), ("test", test))
        }
        self.meta = {
            "source_vocab": len(VOCAB),
            "target_vocab": len(VOCAB),
            "eos": None,  # answers have a fixed length: digits + 1 characters, space-padded
            "pad": None,  # the padding spaces are part of the answer, as in the lab
            "max_len": d.digits + 1,
            "digits": d.digits,
            "reverse": d.reverse,
        }

    def report(self, run_dir: Path, model: nn.Module) -> dict[str, Any]:
        found = super().report(run_dir, model)
        # The trivial baseline: the most frequent training answer, whatever the question.
        answers, counts = self.splits["train"]["y"].unique(dim=0, return_counts=True)
        common = answers[counts.argmax()]
        found["majority_exact_match"] = float(
            (self.splits["test"]["y"] == common).all(dim=1).double().mean()
        )
        return found

    def verdict(self, metrics: dict[str, Any]) -> Verdict | None:
        """Test exact match against always giving the most frequent training answer."""
        exact, base = metrics["test_exact_match"], metrics["majority_exact_match"]
        learned = clearly_above(exact, base, len(self.splits["test"]["y"]))
        causes = ["too few epochs: addition is learned late, digit by digit"]
        tries = ["--set train.epochs=50 (the lab's)", "--set model.decoder='attention'"]
        return Verdict(
            "test exact match", exact, "the most frequent answer", base, learned,
            [] if learned else causes, [] if learned else tries,
        )  # fmt: skip

    def source_tokens(self, ids: Tensor) -> list[str]:
        return list(decode(ids)[0])

    def target_tokens(self, ids: Tensor) -> list[str]:
        return list(decode(ids)[0])

    def source_text(self, ids: Tensor) -> str:
        question = decode(ids)[0]
        return (question[::-1] if self.meta["reverse"] else question).strip()

    def target_text(self, ids: Tensor) -> str:
        return decode(ids)[0].strip()

    def predict(self, model: nn.Module, inputs: list[str]) -> list[dict[str, Any]]:
        digits, reverse = self.meta["digits"], self.meta["reverse"]
        questions = [format_question(*parse_question(q, digits), digits, reverse) for q in inputs]
        answers = self._answer(model, encode(questions).to(self.device), None)
        return [
            {"question": q.strip(), "answer": self.target_text(ids), "probability": p}
            for q, (ids, p) in zip(inputs, answers, strict=True)
        ]
