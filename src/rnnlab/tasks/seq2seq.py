"""Sequence to sequence on your own pairs: a TSV of ``source<TAB>target`` lines (many-to-many).

Data: the pairs shuffled (``train.seed``) and split into train/validation/test; characters as tokens
by default (``data.tokens = "word"`` splits on whitespace); each vocabulary is built from the training
pairs, an unseen token reads as ``<unk>``. Every target ends with ``<eos>``.
Model: :class:`rnnlab.seq2seq.Seq2Seq`, an encoder RNN and a ``plain``, ``peeking`` or ``attention``
decoder; teacher forcing ``train.teacher_forcing``; greedy decoding, or beam search with
``model.beam_size`` > 1 and length normalisation ``model.alpha``.
What it learned: exact match (the whole target right) and token accuracy on held-out pairs, a few
validation pairs after every epoch, the attention of a few test pairs; ``rnnlab predict`` translates.

:class:`PairsTask` is the recipe both this task and ``addition`` follow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch
import torch.nn.functional as F
from rich.table import Table
from rich.text import Text
from torch import Tensor, nn

from rnnlab import plots
from rnnlab.config import ModelConfig, TrainConfig, check_at_least, check_probability
from rnnlab.errors import RnnlabError, check_file
from rnnlab.seq2seq import Seq2Seq
from rnnlab.tasks.base import Task
from rnnlab.train import Batch, Callback, Trainer

# Pairs shipped with rnnlab, read when data.path is not set: dates in words -> ISO dates.
EXAMPLE_PAIRS = Path(__file__).parents[1] / "examples" / "dates.tsv"
SPECIALS = ("<pad>", "<unk>", "<eos>")
PAD, UNK, EOS = 0, 1, 2


@dataclass
class Seq2SeqModel(ModelConfig):
    """The encoder's recurrent stack (shared keys) plus the decoder and the decoding."""

    embedding: int = 32
    decoder: Literal["plain", "peeking", "attention"] = "plain"
    attention: Literal["additive", "dot", "general"] = "additive"
    decoder_layers: int = 1
    beam_size: int = 1
    alpha: float = 0.0

    def check(self) -> None:
        super().check()
        check_at_least("model", self, 1, "embedding", "decoder_layers", "beam_size")
        check_at_least("model", self, 0, "alpha")


@dataclass
class Seq2SeqTrain(TrainConfig):
    monitor: str = "val_exact_match"
    teacher_forcing: float = 1.0

    def check(self) -> None:
        super().check()
        check_probability("train.teacher_forcing", self.teacher_forcing)


class PairsMeta(TypedDict):
    """``model.json`` of an encoder–decoder: vocabulary sizes, special ids, decoding's bound."""

    source_vocab: int
    target_vocab: int
    eos: int | None
    pad: int | None
    max_len: int


class PairsTask(Task):
    """The seq2seq recipe over ``splits`` with ``x`` (N, S) source ids, optional ``lengths`` (N,)
    and ``y`` (N, T) target ids, and ``meta`` with ``source_vocab``, ``target_vocab`` (sizes),
    ``eos`` (id or None), ``pad`` (target id the loss ignores, or None) and ``max_len``."""

    Model = Seq2SeqModel
    Train = Seq2SeqTrain
    Meta: Any = PairsMeta
    accuracy = "token_accuracy"  # the per-token metric's name
    samples = 5  # validation examples shown after every epoch

    # -- how a task shows its tokens ----------------------------------------------------------
    def source_text(self, ids: Tensor) -> str:
        raise NotImplementedError

    def target_text(self, ids: Tensor) -> str:
        """Target ids up to the first EOS as text."""
        raise NotImplementedError

    def source_tokens(self, ids: Tensor) -> list[str]:
        """The source tokens as the encoder reads them (for attention plots)."""
        raise NotImplementedError

    def target_tokens(self, ids: Tensor) -> list[str]:
        raise NotImplementedError

    # -- the recipe ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return Seq2Seq(
            self.meta["source_vocab"],
            self.meta["target_vocab"],
            m.recurrent_kwargs(),
            embedding=m.embedding,
            decoder=m.decoder,
            attention=m.attention,
            decoder_layers=m.decoder_layers,
            eos=self.meta["eos"],
        )

    def _ignore(self) -> int:
        pad = self.meta["pad"]
        return -100 if pad is None else pad  # -100: cross_entropy's "ignore nothing"

    def loss(self, model: nn.Module, batch: Batch, state: Any) -> tuple[Tensor, Any]:
        logits, _ = model(
            batch["x"], batch["y"], batch.get("lengths"), self.cfg.train.teacher_forcing
        )
        loss = F.cross_entropy(  # in fp32 under mixed precision too
            logits.float().flatten(0, 1), batch["y"].flatten(), ignore_index=self._ignore()
        )
        return loss, None

    def decode(self, model: nn.Module, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Best output ids (N, T) of each source: greedy, or beam search if ``beam_size`` > 1."""
        m, max_len = self.cfg.model, self.meta["max_len"]
        if m.beam_size > 1:
            return model.beam_search(x, max_len, m.beam_size, m.alpha, lengths).tokens[:, 0]
        return model.greedy(x, max_len, lengths).tokens

    def _decoded_by_forward(self, model: nn.Module, y: Tensor) -> bool:
        """Whether this task's decoding is the training pass itself: greedy (no beam), in one
        parallel pass, over as many steps as the targets have."""
        return (
            self.cfg.model.beam_size == 1
            and model.greedy_is_parallel
            and y.shape[1] == self.meta["max_len"]
        )

    def _scores(self, model: nn.Module, batch: Batch) -> Tensor:
        """Per example: summed token loss, counted tokens, right tokens, whole target right."""
        x, y, lengths = batch["x"], batch["y"], batch.get("lengths")
        logits, _ = model(x, y, lengths)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), y.flatten(), ignore_index=self._ignore(), reduction="none"
        ).view(y.shape)
        if self._decoded_by_forward(model, y):
            # The same parallel pass greedy decoding would run again: its best tokens are the
            # greedy answer (one forward instead of two: addition validates in 45 % less time).
            pred = logits.log_softmax(-1).max(-1).indices
        else:
            pred = self.decode(model, x, lengths)
        eos, pad = self.meta["eos"], self.meta["pad"]
        if eos is not None:
            # Everything after the first EOS reads as padding, as in the targets.
            after = (pred == eos).long().cumsum(1) - (pred == eos).long() > 0
            pred = pred.masked_fill(after, PAD if pad is None else pad)
        width = max(pred.shape[1], y.shape[1])
        pred, y = (
            F.pad(t, (0, width - t.shape[1]), value=PAD if pad is None else pad) for t in (pred, y)
        )
        counted = torch.ones_like(y, dtype=torch.bool) if pad is None else y != pad
        right = (pred == y) & counted
        return torch.stack(
            [
                (loss * counted[:, : loss.shape[1]]).sum(1),
                counted.sum(1).to(loss.dtype),
                right.sum(1).to(loss.dtype),
                (pred == y).all(1).to(loss.dtype),
            ],
            dim=1,
        )

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        loss, counted, right, exact = self.outputs(model, split, self._scores).sum(0).tolist()
        n = len(self.splits[split]["y"])
        return {
            f"{split}_loss": loss / counted,
            f"{split}_exact_match": exact / n,
            f"{split}_{self.accuracy}": right / counted,
        }

    def callbacks(self, run_dir: Path) -> tuple[Callback, ...]:
        return (self._show_samples,)

    def _show_samples(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        """A few validation examples after every epoch, the lab's ``Q … T … ✓ …`` lines."""
        if trainer.quiet:
            return
        split = self.splits["val"]
        rows = random.Random(epoch).sample(
            range(len(split["y"])), min(self.samples, len(split["y"]))
        )
        index = torch.tensor(rows, device=self.device)
        lengths = split["lengths"][index] if "lengths" in split else None
        trainer.model.eval()
        with torch.inference_mode():
            pred = self.decode(trainer.model, split["x"][index], lengths)
        table = Table(show_header=False, box=None, pad_edge=False)
        for i, r in enumerate(rows):
            truth, guess = self.target_text(split["y"][r]), self.target_text(pred[i])
            mark = "[green]✓[/]" if guess == truth else "[red]✗[/]"
            shown = Text(guess) if guess else Text("(nothing)", style="dim")
            # Text, not markup: a user's pairs may hold brackets rich would read as styles.
            table.add_row("Q", Text(self.source_text(split["x"][r])), "T", Text(truth), mark, shown)
        trainer.console.print(table)

    def report(self, run_dir: Path, model: nn.Module) -> dict[str, Any]:
        if self.cfg.model.decoder != "attention":
            return {}
        split = self.splits["test"]
        index = torch.arange(min(4, len(split["y"])), device=self.device)
        lengths = split["lengths"][index] if "lengths" in split else None
        with torch.inference_mode():
            decoded = model.greedy(split["x"][index], self.meta["max_len"], lengths)
        examples = []
        for i in range(len(index)):
            source = self.source_tokens(split["x"][i])
            target = self.target_tokens(decoded.tokens[i])
            weights = decoded.attention[i, : len(target), : len(source)].cpu().numpy()
            examples.append((weights, source, target))
        plots.attention(examples, run_dir / "attention.png", title=self.cfg.task)
        return {}

    def _answer(self, model: nn.Module, x: Tensor, lengths: Tensor | None) -> list[tuple]:
        """Best output ids and their probability, one per source."""
        m, max_len = self.cfg.model, self.meta["max_len"]
        with torch.inference_mode():
            beams = model.beam_search(x, max_len, m.beam_size, m.alpha, lengths)
        return list(zip(beams.tokens[:, 0], beams.log_probs[:, 0].exp().tolist(), strict=True))


# -- the general pairs task ------------------------------------------------------------------------
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
