"""The encoder–decoder recipe the pairs tasks share (``seq2seq`` on a TSV, ``addition``).

A pairs task's splits hold ``x`` (N, S) source ids, optional ``lengths`` (N,) and ``y`` (N, T)
target ids. The recipe builds :class:`rnnlab.nn.Seq2Seq` from ``[model]`` (its typed config, plus
the decoding's beam size and length normalisation), trains with teacher forcing
``train.teacher_forcing``, decodes greedily or with beam search, scores exact match and token
accuracy, shows a few validation pairs after every epoch (the lab's ``Q … T … ✓ …`` lines) and
plots the attention of a few test pairs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypedDict, cast

import torch
import torch.nn.functional as F
from rich.table import Table
from rich.text import Text
from torch import Tensor, nn

from rnnlab import plots
from rnnlab.config import check_at_least, check_probability
from rnnlab.nn import Seq2Seq, Seq2SeqConfig
from rnnlab.tasks.base import Task
from rnnlab.training.batches import Batch
from rnnlab.training.callbacks import Callback, EpochEnd
from rnnlab.training.config import TrainConfig
from rnnlab.training.trainer import Trainer

SPECIALS = ("<pad>", "<unk>", "<eos>")  # the token ids 0, 1, 2 of a vocabulary built from pairs
PAD, UNK, EOS = 0, 1, 2


@dataclass
class PairsModel(Seq2SeqConfig):
    """``[model]`` of a pairs task: the encoder–decoder (:class:`rnnlab.nn.Seq2SeqConfig`) and its
    decoding: beam search with ``beam_size`` > 1, length normalisation ``alpha``."""

    beam_size: int = 1
    alpha: float = 0.0

    def check(self) -> None:
        super().check()
        check_at_least("model", self, 1, "beam_size")
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

    Model = PairsModel
    Train = Seq2SeqTrain
    Meta: ClassVar[Any] = PairsMeta
    accuracy: ClassVar[str] = "token_accuracy"  # the per-token metric's name
    samples: ClassVar[int] = 5  # validation examples shown after every epoch

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
        return Seq2Seq(
            self.meta["source_vocab"], self.meta["target_vocab"], self.cfg.model, self.meta["eos"]
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
        m, max_len, seq2seq = self.cfg.model, self.meta["max_len"], cast(Seq2Seq, model)
        if m.beam_size > 1:
            return seq2seq.beam_search(x, max_len, m.beam_size, m.alpha, lengths).tokens[:, 0]
        return seq2seq.greedy(x, max_len, lengths).tokens

    def _decoded_by_forward(self, model: nn.Module, y: Tensor) -> bool:
        """Whether this task's decoding is the training pass itself: greedy (no beam), in one
        parallel pass, over as many steps as the targets have."""
        return (
            self.cfg.model.beam_size == 1
            and cast(Seq2Seq, model).greedy_is_parallel
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
            # greedy answer (one forward instead of two).
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
        return (EpochEnd(self._show_samples),)

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
            decoded = cast(Seq2Seq, model).greedy(split["x"][index], self.meta["max_len"], lengths)
        examples = []
        assert decoded.attention is not None  # an attention decoder's
        for i in range(len(index)):
            source = self.source_tokens(split["x"][i])
            target = self.target_tokens(decoded.tokens[i])
            weights = decoded.attention[i, : len(target), : len(source)].cpu().numpy()
            examples.append((weights, source, target))
        plots.attention(examples, run_dir / "attention.png", title=self.cfg.task)
        return {}

    def _answer(
        self, model: nn.Module, x: Tensor, lengths: Tensor | None
    ) -> list[tuple[Tensor, float]]:
        """Best output ids and their probability, one per source."""
        m, max_len = self.cfg.model, self.meta["max_len"]
        with torch.inference_mode():
            beams = cast(Seq2Seq, model).beam_search(x, max_len, m.beam_size, m.alpha, lengths)
        return list(zip(beams.tokens[:, 0], beams.log_probs[:, 0].exp().tolist(), strict=True))
