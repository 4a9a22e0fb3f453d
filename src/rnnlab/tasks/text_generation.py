"""Lab task 4: write poetry one character at a time (a character language model).

Data: a text (default: the lab's ``poetry1``), lower-cased, as character ids; the last 10 % is held
out. Two ways to train on the first 90 %:

- ``windows`` (the lab): 50-character windows every 3 characters, each predicting only the
  character after it, every window read from a zero state;
- ``stream`` (the lecture's truncated BPTT): the text cut into ``batch_size`` contiguous streams,
  read ``train.bptt`` characters at a time, every next character predicted, the state carried from
  one chunk to the next (its gradient cut there) and reset each epoch.

Model: one-hot (or embedded) characters, an LSTM, a softmax over the vocabulary.
What it learned: bits per character on the held-out text (beside ``unigram_bpc``, what knowing only
the characters' frequencies scores), and samples at the lab's temperatures every
``train.sample_every`` epochs in ``samples.txt``; ``rnnlab generate`` writes more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab import data
from rnnlab.config import check_at_least, check_share
from rnnlab.data import registry
from rnnlab.data.text import CharVocab, char_windows
from rnnlab.errors import RnnlabError
from rnnlab.files import write_text
from rnnlab.nn import CharLM, CharLMConfig
from rnnlab.schema import Mismatch, entry_error
from rnnlab.tasks.base import Task, Verdict
from rnnlab.tasks.metrics import bits_per_char
from rnnlab.tasks.sampling import Sample, generate
from rnnlab.training.batches import Batch, Batches, StreamBatches
from rnnlab.training.callbacks import Callback, EpochEnd
from rnnlab.training.config import TrainConfig
from rnnlab.training.trainer import Trainer


@dataclass
class TextData:
    """Which text (a registry name or a file) and how it is cut into training examples."""

    dataset: str = "poetry1"
    path: str | None = None
    lower: bool = True
    mode: Literal["windows", "stream"] = "windows"
    maxlen: int = 50
    step: int = 3
    val_fraction: float = 0.1
    test_fraction: float = 0.0  # the lab holds out no test text: the test metrics are validation's

    def check(self) -> None:
        check_at_least("data", self, 1, "maxlen", "step")
        check_share("data.val_fraction", self.val_fraction)
        if self.test_fraction:
            check_share("data.test_fraction", self.test_fraction)
            check_share(
                "data.val_fraction + data.test_fraction", self.val_fraction + self.test_fraction
            )
        if self.path is None and registry.dataset(self.dataset).task != "text-generation":
            texts = [d.name for d in registry.DATASETS.values() if d.task == "text-generation"]
            raise RnnlabError(
                f"config key data.dataset: {self.dataset!r} is not a text; texts: {', '.join(texts)}"
            )


@dataclass
class TextTrain(TrainConfig):
    """Training, plus truncated BPTT and the lab's samples every few epochs."""

    monitor: str = "val_bpc"
    bptt: int = 100
    sample_every: int = 10
    sample_temperatures: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.8, 1.0])
    sample_lines: int = 10
    sample_length: int = 1000

    def check(self) -> None:
        super().check()
        check_at_least("train", self, 1, "bptt", "sample_every", "sample_lines", "sample_length")
        if min(self.sample_temperatures, default=-1.0) < 0:
            raise RnnlabError(
                f"config key train.sample_temperatures must be >= 0, got {self.sample_temperatures}"
            )


class _TextMetaRequired(TypedDict):
    vocab: str


class TextMeta(_TextMetaRequired, total=False):
    """``model.json`` of a character model: its characters as JSON, and whether it lower-cases."""

    lower: bool


class TextGeneration(Task):
    name = "text-generation"
    summary = "character-level poetry (one-hot + LSTM, windows or truncated BPTT, sampling)"
    Data = TextData
    Model = CharLMConfig
    Train = TextTrain
    Meta = TextMeta

    def check_meta(self, path: Path) -> None:
        try:
            CharVocab.from_json(self.meta["vocab"])
        except Mismatch as m:
            raise entry_error(path, "vocab", f"is not a character vocabulary ({m})") from None

    def load(self) -> None:
        d = self.cfg.data
        path = d.path or data.fetch(d.dataset, self.data_dir)[f"{d.dataset}.txt.gz"]
        corpus = data.load_corpus(
            path, lower=d.lower, val_fraction=d.val_fraction, test_fraction=d.test_fraction
        )
        if len(corpus.val) < 2:
            raise RnnlabError(
                f"{path}: too short to hold out a validation text (data.val_fraction)"
            )
        if d.test_fraction and len(corpus.test) < 2:
            raise RnnlabError(f"{path}: too short to hold out a test text (data.test_fraction)")
        if d.mode == "windows":
            x, y = char_windows(corpus.train, d.maxlen, d.step)
            train = {"x": x, "y": y}  # x is a view of the text: windows are copied per batch
        else:
            train = {"ids": corpus.train}
        # The lab has no test text: without data.test_fraction the test metrics are the
        # validation text's, at the best epoch.
        held_out = {"ids": corpus.val}
        test = {"ids": corpus.test} if d.test_fraction else held_out
        self.splits = {"train": train, "val": held_out, "test": test}
        self.meta = {"vocab": corpus.vocab.to_json(), "lower": d.lower}
        # The trivial baseline: every character at its training frequency, the context ignored
        # (add-one counts, so a character the training text lacks is not infinitely surprising).
        counts = torch.bincount(corpus.train, minlength=len(corpus.vocab)).double() + 1.0
        scored = test["ids"][1:]  # the characters test_bpc scores
        self.unigram_bpc = float(-(counts / counts.sum()).log2()[scored].mean())

    @property
    def vocab(self) -> CharVocab:
        return CharVocab.from_json(self.meta["vocab"])

    def build_model(self) -> nn.Module:
        return CharLM(len(self.vocab), self.cfg.model)

    def steps(self) -> int:
        if self.cfg.data.mode == "stream":
            return self.cfg.train.bptt
        return min(self.cfg.data.maxlen, self.cfg.train.bptt)

    def train_batches(self) -> Batches:
        if self.cfg.data.mode == "windows":
            return super().train_batches()
        t = self.cfg.train
        return StreamBatches(self.splits["train"]["ids"], t.batch_size, t.bptt, t.seed)

    def loss(self, model: nn.Module, batch: Batch, state: Any) -> tuple[Tensor, Any]:
        if self.cfg.data.mode == "stream":
            logits, state = model(batch["x"], state)  # (B, T, V)
            return F.cross_entropy(logits.float().flatten(0, 1), batch["y"].flatten()), state
        x, bptt = batch["x"], self.cfg.train.bptt
        if bptt < x.shape[1]:
            # Backpropagate through the last ``bptt`` steps of each window only: the start is
            # read without a graph, so its cost is the forward pass alone.
            with torch.no_grad():
                _, start = model(x[:, :-bptt])
            x, state = x[:, -bptt:], start
        logits, _ = model(x, state, last_only=True)  # (B, V)
        return F.cross_entropy(logits.float(), batch["y"]), None

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Bits per character of the held-out text, read as one stream, whatever the mode.

        The model reads the whole held-out text from a zero state, carrying its state, and
        predicts every next character (all but the first are scored), so windows and streams
        are scored on the same characters. For a windows model this is context beyond its 50
        training characters, which an LSTM carries without being retrained.
        """
        ids = self.splits[split]["ids"]
        logits, _ = model(ids[None, :-1])  # (1, L - 1, V)
        nll = F.cross_entropy(logits[0].float(), ids[1:]).item()
        return {f"{split}_loss": nll, f"{split}_bpc": bits_per_char(nll)}

    def report(self, run_dir: Path, model: nn.Module) -> dict[str, Any]:
        # metrics.json carries the monitored val_bpc too (at the best epoch), beside test_bpc.
        return {**self.evaluate(model, "val"), "unigram_bpc": self.unigram_bpc}

    def verdict(self, metrics: dict[str, Any]) -> Verdict | None:
        """Bits per character against the characters' frequencies alone: learned where the
        model saves at least a twentieth of a bit a character."""
        bpc, base = metrics["test_bpc"], metrics["unigram_bpc"]
        learned = bpc < base - 0.05
        causes = ["too few epochs for the text", "a learning rate too high or too low"]
        tries = ["--set train.epochs=N with a larger N", "--set train.lr=3e-3"]
        return Verdict(
            "test bits per character", bpc, "the characters' frequencies", base, learned,
            [] if learned else causes, [] if learned else tries,
        )  # fmt: skip

    def predict(self, model: nn.Module, inputs: list[str]) -> list[dict[str, Any]]:
        """A character model continues text rather than answering inputs: say which command does."""
        raise RnnlabError(
            f"task {self.name!r} writes text rather than answering inputs: "
            "rnnlab generate RUN_DIR --prime TEXT"
        )

    def samples(self, model: nn.Module, prime: str | None = None, **kwargs: Any) -> list[Sample]:
        """Continue ``prime`` (random if None) with :func:`rnnlab.generate.generate`.

        A lower-cased model gets a lower-cased prime, so ``"The"`` primes it like ``"the"``.
        """
        if prime is not None and self.meta.get("lower", True):
            prime = prime.lower()
        return generate(
            cast(CharLM, model),
            self.vocab,
            prime=prime,
            prime_length=self.cfg.data.maxlen,
            **kwargs,
        )

    def callbacks(self, run_dir: Path) -> tuple[Callback, ...]:
        t = self.cfg.train
        path = run_dir / "samples.txt"

        def write_samples(trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
            if epoch % t.sample_every and epoch != t.epochs:
                return
            found = self.samples(
                trainer.model,
                temperatures=t.sample_temperatures,
                length=t.sample_length,
                lines=t.sample_lines,
                seed=t.seed + epoch,
            )
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            write_text(
                path, old + format_samples(found, f"epoch {epoch}, val_bpc {row['val_bpc']:.3f}")
            )

        return (EpochEnd(write_samples),)


def format_samples(samples: Sequence[Sample], title: str) -> str:
    """A block of samples as the lab writes them: a rule, the title, then one text per temperature."""
    parts = ["-" * 50, title, f"prime: {samples[0].prime!r}"]
    for s in samples:
        parts += ["", f"--- temperature {s.temperature:g}", s.text]
    return "\n".join(parts) + "\n\n"
