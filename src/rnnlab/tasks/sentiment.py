"""Lab task 3: is this airline tweet negative, neutral or positive? (many-to-one over words).

Data: the lab's cleaned tweets as word ids of the ``num_words`` most frequent training words, or
(``data.pieces``) the raw tweets as a pretrained transformer's word pieces. A transfer set
(``data.transfer``: texts a fine-tuned transformer labelled, ``benchmarks/transformer_teacher.py``)
can stand in for the training tweets: the model then learns the teacher's probabilities.
Model: a word embedding, an LSTM over each tweet's true length (packed, not the lab's left padding),
a linear layer from the last state to the three classes.
What it learned: accuracy and macro-F1 on held-out tweets, a confusion matrix; ``rnnlab predict``
labels new text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch
from torch import nn

from rnnlab import data
from rnnlab.config import check_at_least
from rnnlab.data.pieces import WordPieces
from rnnlab.data.tweets import encoder_from_json, load_transfer, pad_right
from rnnlab.errors import RnnlabError
from rnnlab.nn import ManyToOne, ManyToOneConfig
from rnnlab.schema import Mismatch, entry_error
from rnnlab.tasks.classify import Classifier, ClassifierTrain
from rnnlab.training.batches import Batches, LengthBuckets
from rnnlab.training.distillation import soften


@dataclass
class TweetsData:
    """A CSV of texts and labels (default: the lab's airline tweets) and how to number words."""

    path: str | None = None
    text_column: str = "text"
    label_column: str = "twsentiment"
    num_words: int = 5000
    split: Literal["stratified", "ordered"] = "stratified"
    # The stratified split's shuffle, apart from train.seed: runs of other seeds share a test set.
    split_seed: int = 0
    oov: Literal["drop", "unk"] = "drop"
    # A WordPiece vocabulary (BERT's vocab.txt): tweets read as its pieces, not as cleaned words
    # (num_words and oov then unused).
    pieces: str | None = None
    # A CSV of texts with each class's probability from a teacher: trained on in place of the
    # training tweets, toward those probabilities (train.distill_weight, train.distill_temperature).
    transfer: str | None = None

    def check(self) -> None:
        check_at_least("data", self, 1, "num_words")


@dataclass
class TextModel(ManyToOneConfig):
    embedding: int = 40


@dataclass
class SentimentTrain(ClassifierTrain):
    bucket_by_length: bool = True


def _dropped_note(empty: int, oov: dict[str, int]) -> str | None:
    """One line on the texts a word model cannot read, or None when every text was kept."""
    if not empty and not any(oov.values()):
        return None
    per_split = ", ".join(f"{name} {n}" for name, n in oov.items())
    return (
        f"left out {empty + sum(oov.values())} texts with no word to read: {empty} with no "
        f"letters, {sum(oov.values())} with only words outside the vocabulary ({per_split})"
    )


class SentimentMeta(TypedDict):
    """``model.json`` of a sentiment run: class names and the text encoder as JSON."""

    classes: list[str]
    vocab: str


class Sentiment(Classifier):
    name = "sentiment"
    summary = "airline-tweet sentiment (word embedding + LSTM, 3 classes, many-to-one)"
    Data = TweetsData
    Model = TextModel
    Train = SentimentTrain
    Meta = SentimentMeta

    def check_meta(self, path: Path) -> None:
        try:
            encoder_from_json(self.meta["vocab"])
        except Mismatch as m:
            raise entry_error(path, "vocab", f"is not a vocabulary ({m})") from None

    def load(self) -> None:
        d = self.cfg.data
        path = d.path or data.fetch("airlines", self.data_dir)["Airlines.csv"]
        pieces = WordPieces.read(d.pieces) if d.pieces else None
        tweets = data.load_tweets(
            path, d.num_words, d.split, d.split_seed, d.oov, d.text_column, d.label_column, pieces
        )
        self.splits = {
            name: {
                "x": torch.from_numpy(part.tokens),
                "lengths": torch.from_numpy(part.lengths),
                "y": torch.from_numpy(part.labels),
            }
            for name, part in (("train", tweets.train), ("val", tweets.val), ("test", tweets.test))
        }
        self.meta = {"classes": list(tweets.classes), "vocab": tweets.vocab.to_json()}
        self.dropped = _dropped_note(tweets.dropped_empty, tweets.dropped_oov)

    def prepare_training(self) -> str | None:
        """Says which texts were left out (none of their words is known), beside any teachers;
        reads the transfer set in place of the training tweets."""
        lines = [self.dropped, self.read_transfer()]
        return "\n".join(line for line in lines if line) or None

    def read_transfer(self) -> str | None:
        path, t = self.cfg.data.transfer, self.cfg.train
        if path is None:
            return None
        if t.teachers:
            raise RnnlabError(
                "config keys data.transfer and train.teachers both give soft targets; use one"
            )
        tweets = len(self.splits["train"]["y"])
        split, probs, empty = load_transfer(
            path, tuple(self.meta["classes"]), encoder_from_json(self.meta["vocab"])
        )
        # a probability of 0 is log -inf, which softens back to 0
        soft = soften(torch.from_numpy(probs).log(), t.distill_temperature)
        self.splits["train"] = {
            "x": torch.from_numpy(split.tokens),
            "lengths": torch.from_numpy(split.lengths),
            "y": torch.from_numpy(split.labels),
            "soft": soft,
        }
        self.to(self.device)
        left_out = f", {empty} with no word to read left out" if empty else ""
        return (
            f"trained on the transfer set {path}: {len(soft):,} texts{left_out}, in place of the "
            f"{tweets:,} training tweets, toward its probabilities (weight {t.distill_weight}, "
            f"temperature {t.distill_temperature})"
        )

    def train_batches(self) -> Batches:
        """Tweets of similar lengths batched together: far less padding to run through the LSTM."""
        cfg = self.cfg.train
        if not cfg.bucket_by_length:
            return super().train_batches()
        return LengthBuckets(self.splits["train"], cfg.batch_size, seed=cfg.seed)

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        vocab = encoder_from_json(self.meta["vocab"])
        return ManyToOne(m.embedding, len(self.meta["classes"]), m, vocab_size=len(vocab))

    def predict(self, model: nn.Module, inputs: list[str]) -> list[dict[str, Any]]:
        vocab = encoder_from_json(self.meta["vocab"])
        encoded = [vocab.encode(text) for text in inputs]
        for text, ids in zip(inputs, encoded, strict=True):
            if not ids:
                raise RnnlabError(
                    f"text {text!r} has no word of the model's vocabulary; nothing to classify"
                )
        # padded as in training, run in eval batches with the true lengths
        tokens, lengths = (torch.from_numpy(a).to(self.device) for a in pad_right(encoded))
        answers = self.answers(model, {"x": tokens, "lengths": lengths})
        return [{"text": text} | answer for text, answer in zip(inputs, answers, strict=True)]
