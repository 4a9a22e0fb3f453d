"""Fine-tune a pretrained transformer on sentiment's training tweets and label a transfer set for a
recurrent student (knowledge distillation from BERT, Tang et al. 2019).

    pip install -e ".[teacher]"
    python benchmarks/transformer_teacher.py --data-dir DATA --out runs/teacher
    rnnlab run sentiment --config configs/sentiment-distilled.toml   # reads runs/teacher/

The 11,711 training tweets alone do not teach a recurrent model much above 0.80 on the stratified
split (benchmarks/RESULTS.md); a transformer pretrained on a billion sentence pairs knows English
beyond them. The teacher is all-MiniLM-L6-v2 (6 layers, 22.6 M parameters as used here; fetched
from upstream into the data directory and verified by digest, as `rnnlab data fetch minilm`), read
through its mean-pooled last layer and a new linear head, fine-tuned on the training tweets: AdamW
lr 5e-5, weight decay 0.01, batch 32, 6 % warm-up then linear decay, clipping at norm 1, 2 epochs,
texts cut at 64 pieces. It then labels the transfer set: every training tweet and ``--copies``
altered copies of each (with probability 0.25 a random span of 1-5 words, then each word dropped
with probability 0.1), so the student sees the teacher's answer on many more texts than there are
labels.

It reads rnnlab's own split of the tweets (``data.split='stratified'``, ``data.split_seed=0``):
the validation and test tweets are never trained on or copied. Writes to ``--out``:
``transfer.csv`` (``text`` and each class's probability), ``vocab.txt`` (the teacher's word pieces,
for the student's ``data.pieces``) and ``teacher.json`` (accuracy per epoch on validation and
test, seconds, settings). On a 2-core CPU: 13-22 min of fine-tuning, 15-24 min of labelling.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn

from rnnlab import data
from rnnlab.data.pieces import WordPieces
from rnnlab.data.table import read_csv
from rnnlab.data.tweets import pad_right
from rnnlab.errors import RnnlabError
from rnnlab.files import write_csv, write_json, write_text

MAX_PIECES = 64  # the teacher's input, [CLS] and [SEP] included


def bert(model_file: Path, vocab_size: int) -> nn.Module:
    """all-MiniLM-L6-v2's encoder with its pretrained weights (its config.json, written out)."""
    try:
        from transformers import BertConfig, BertModel
    except ImportError:
        raise SystemExit("the teacher needs transformers: pip install -e '.[teacher]'") from None
    from safetensors.torch import load_file

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    model = BertModel(config, add_pooling_layer=False)
    state = load_file(model_file)
    state.pop("embeddings.position_ids", None)  # a buffer older transformers saved
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("pooler.")})
    return model


class Teacher(nn.Module):
    """The encoder, the mean of its last layer over each text's pieces, a linear map to classes."""

    def __init__(self, encoder: nn.Module, classes: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(encoder.config.hidden_size, classes)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))


class Inputs:
    """Texts as the teacher's padded piece ids: [CLS] pieces [SEP], cut at ``MAX_PIECES``."""

    def __init__(self, pieces: WordPieces) -> None:
        self.pieces = pieces
        ids = {p: i for i, p in enumerate(pieces.pieces)}
        self.cls, self.sep = ids["[CLS]"], ids["[SEP]"]

    def encode(self, texts: list[str]) -> list[list[int]]:
        body = MAX_PIECES - 2
        # rnnlab's ids are the vocabulary's line numbers from 1; BERT's count from 0
        return [
            [self.cls, *(i - 1 for i in ids[:body]), self.sep]
            for ids in self.pieces.encode_batch(texts)
        ]

    @staticmethod
    def batch(encoded: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Padded ids and the attention mask ([PAD] is piece 0, as rnnlab pads)."""
        ids = torch.from_numpy(pad_right(encoded)[0])
        return ids, (ids != 0).long()


def check_pieces(inputs: Inputs, vocab: Path, texts: list[str]) -> None:
    """rnnlab's word pieces (what the student reads) must be transformers' own (what BERT read)."""
    from transformers import BertTokenizerFast

    theirs = BertTokenizerFast(str(vocab), do_lower_case=True)
    ours = inputs.pieces.encode_batch(texts)
    differ = sum(
        [i + 1 for i in ids] != o
        for ids, o in zip(theirs(texts, add_special_tokens=False)["input_ids"], ours, strict=True)
    )
    if differ:
        raise SystemExit(f"error: {differ} of {len(texts)} texts split otherwise than transformers")
    print(
        f"word pieces: the same as transformers' BertTokenizerFast on all {len(texts):,} texts",
        flush=True,
    )


def augment(text: str, rng: random.Random) -> str:
    """One altered copy (Tang et al. 2019): maybe a random span of 1-5 words, then word drops."""
    words = text.split()
    if rng.random() < 0.25 and len(words) > 1:
        n = rng.randint(1, min(5, len(words)))
        start = rng.randrange(len(words) - n + 1)
        words = words[start : start + n]
    return " ".join([w for w in words if rng.random() >= 0.1] or words[:1])


def bar(what: str, total: int) -> tuple[Progress, int]:
    progress = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
    return progress, progress.add_task(what, total=total)


def logits(model: Teacher, encoded: list[list[int]], what: str, batch: int = 256) -> Tensor:
    """The teacher's logits on every text, in batches of similar lengths."""
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = torch.empty(len(encoded), model.head.out_features)
    progress, task = bar(what, len(encoded))
    with progress, torch.inference_mode():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            out[idx] = model(*Inputs.batch([encoded[i] for i in idx])).float()
            progress.advance(task, len(idx))
    model.train()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None, help="where the tweets are")
    p.add_argument("--model-dir", type=Path, default=None, help="MiniLM's files (default: data)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--copies", type=int, default=15, help="altered copies of each training tweet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--limit", type=int, default=None, help="only the first N training tweets")
    args = p.parse_args()
    for name, least in (("epochs", 1), ("copies", 0), ("limit", 1)):
        value = getattr(args, name)
        if value is not None and value < least:
            p.error(f"--{name} {value}: expected at least {least}")
    if not args.lr > 0:
        p.error(f"--lr {args.lr}: expected a number above 0")
    try:
        teach(args)
    except RnnlabError as err:
        raise SystemExit(f"error: {err}") from None


def teach(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    path = data.fetch("airlines", args.data_dir)["Airlines.csv"]
    minilm = data.fetch("minilm", args.model_dir or args.data_dir)
    tweets = data.load_tweets(path, split="stratified", seed=0, oov="unk")
    rows = read_csv(path, "the airline tweets")
    column = rows[0][1].index("text")
    splits = {"train": tweets.train, "val": tweets.val, "test": tweets.test}
    texts = {name: [rows[r + 1][1][column] for r in s.rows] for name, s in splits.items()}
    labels = {name: torch.from_numpy(s.labels) for name, s in splits.items()}
    if args.limit:
        texts["train"], labels["train"] = (
            texts["train"][: args.limit],
            labels["train"][: args.limit],
        )
    inputs = Inputs(WordPieces.read(minilm["vocab.txt"]))
    encoded = {name: inputs.encode(t) for name, t in texts.items()}
    check_pieces(inputs, minilm["vocab.txt"], [rows[r][1][column] for r in range(1, len(rows))])

    model = Teacher(bert(minilm["model.safetensors"], len(inputs.pieces.pieces)), 3)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"teacher: {parameters:,} parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    n, b = len(texts["train"]), 32
    steps = args.epochs * -(-n // b)
    warmup = 0.06 * steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, s / warmup) * max(0.0, (steps - s) / steps)
    )
    history, started = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(n).tolist()
        progress, task = bar(f"epoch {epoch}", n)
        with progress:
            for i in range(0, n, b):
                idx = perm[i : i + b]
                z = model(*Inputs.batch([encoded["train"][j] for j in idx]))
                loss = F.cross_entropy(z, labels["train"][idx])
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                schedule.step()
                progress.advance(task, len(idx))
        row = {"epoch": epoch, "seconds": round(time.perf_counter() - started, 1)}
        for name in ("val", "test"):
            z = logits(model, encoded[name], name)
            row[f"{name}_accuracy"] = (z.argmax(1) == labels[name]).float().mean().item()
        history.append(row)
        print(
            f"epoch {epoch}: validation {row['val_accuracy']:.4f}, test {row['test_accuracy']:.4f} "
            f"({row['seconds']:.0f} s)",
            flush=True,
        )
    train_seconds = time.perf_counter() - started

    copies = [augment(t, rng) for _ in range(args.copies) for t in texts["train"]]
    transfer = texts["train"] + copies
    started = time.perf_counter()
    probs = logits(model, encoded["train"] + inputs.encode(copies), "labelling").softmax(-1)
    label_seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(
        args.out / "transfer.csv",
        [
            {"text": t} | {c: f"{q:.8g}" for c, q in zip(tweets.classes, p, strict=True)}
            for t, p in zip(transfer, probs.tolist(), strict=True)
        ],
    )
    write_text(args.out / "vocab.txt", minilm["vocab.txt"].read_text(encoding="utf-8"))
    write_json(
        args.out / "teacher.json",
        {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "parameters": parameters,
            "history": history,
            "train_seconds": round(train_seconds, 1),
            "label_seconds": round(label_seconds, 1),
            "transfer_texts": len(transfer),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        },
    )
    print(
        f"test accuracy {history[-1]['test_accuracy']:.4f}; {len(transfer):,} texts labelled in "
        f"{label_seconds:.0f} s -> {args.out}"
    )


if __name__ == "__main__":
    main()
