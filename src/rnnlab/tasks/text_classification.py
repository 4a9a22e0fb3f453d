"""Your own labelled texts: which class does each text belong to? (many-to-one over words)

The sentiment recipe (:mod:`rnnlab.tasks.sentiment`) on a CSV of yours: name its text and label
columns (``data.text_column``, ``data.label_column``), whatever they are called. Before training
the run reports the class balance, so a skewed file is seen before its accuracy is read. The
settings are the ones that learn the lab's tweets fastest (a bidirectional LSTM read into its mean
and max over the words, Adam, early stopping on validation), not the lab's SGD.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rnnlab.config import check_given
from rnnlab.tasks.sentiment import Sentiment, TweetsData


@dataclass
class TextsData(TweetsData):
    """A CSV of texts and labels; its columns named by ``text_column`` and ``label_column``."""

    label_column: str = "label"
    num_words: int = 20000

    def check(self) -> None:
        super().check()
        check_given(
            "data.path",
            self.path,
            "a CSV of texts and labels (--set data.path='texts.csv' "
            "--set data.text_column='…' --set data.label_column='…')",
        )


class TextClassification(Sentiment):
    name = "text-classification"
    summary = "your own labelled texts from a CSV (the sentiment recipe, columns by name)"
    Data = TextsData

    def prepare_training(self) -> str | None:
        """The class balance of the whole file, then what the sentiment recipe says."""
        counts = Counter(
            int(label) for split in self.splits.values() for label in split["y"].tolist()
        )
        total = sum(counts.values())
        shares = ", ".join(
            f"{name} {counts[k]:,} ({100 * counts[k] / total:.1f} %)"
            for k, name in enumerate(self.meta["classes"])
        )
        balance = f"{len(counts)} classes in {total:,} texts: {shares}"
        return "\n".join(line for line in (balance, super().prepare_training()) if line)
