"""Word pieces (data.pieces) and transfer sets (data.transfer): tokenizing as BERT does, reading a
teacher's probabilities, and a sentiment student that learns them."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, rnnlab
from conftest import raises_one_line
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab import data
from rnnlab.data.pieces import WordPieces
from rnnlab.data.tweets import Vocabulary, encoder_from_json, load_transfer

pytest.importorskip("tokenizers")

PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", ",", "!", "the", "flight", "was", "un", "##friend"]
PIECES += ["##ly", "cafe", "good", "bad", "late", "on", "time", "crew", "what", "gate", "is", "it"]
PIECES += ["thanks", "delayed", "where"]
SIGNAL = {"positive": "good", "negative": "bad", "neutral": "what"}
NEW = {"positive": "thanks", "negative": "delayed", "neutral": "where"}  # in no tweet
FILLER = ["the", "flight", "was", "crew", "on", "time", "gate", "is", "it"]
CLASSES = ("negative", "neutral", "positive")


TINY = WordPieces(PIECES)


def write_vocab(tmp_path: Path, lines: list[str] = PIECES) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sentence(label: str, rng: random.Random, signal: dict[str, str] = SIGNAL) -> str:
    words = rng.sample(FILLER, 3)
    words.insert(rng.randrange(4), signal[label])
    return " ".join(words)


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def test_words_split_into_the_longest_known_pieces_after_bert_normalising(tmp_path):
    pieces = WordPieces.read(write_vocab(tmp_path))
    ids = pieces.encode("The FLIGHT was UNFRIENDLY, Café!!")
    assert pieces.decode(ids) == "the flight was un ##friend ##ly , cafe ! !"
    assert ids[:3] == [PIECES.index("the") + 1, PIECES.index("flight") + 1, 9]  # line numbers
    assert pieces.decode(pieces.encode("zebra good")) == "[UNK] good"  # unspellable: one [UNK]
    assert pieces.encode("   ") == []
    assert len(pieces) == len(PIECES) + 1  # and the padding id 0
    again = encoder_from_json(pieces.to_json())
    assert isinstance(again, WordPieces)
    assert again.encode_batch(["good crew", "late"]) == pieces.encode_batch(["good crew", "late"])


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_becomes_known_pieces_or_none(text):
    ids = TINY.encode(text)
    assert all(1 <= i < len(TINY) for i in ids)
    if any(c.isalnum() for c in text):
        assert ids  # a word no piece spells is still read, as [UNK]
    if not text.strip():
        assert ids == []


@pytest.mark.parametrize(
    ("lines", "names"),
    [
        (["[UNK]", "a", "", "b"], ["line 3", "not a word piece"]),
        (["[UNK]", "a b"], ["line 2", "not a word piece"]),
        (["[UNK]", "a", "b", "a"], ["line 4", "'a'", "repeats line 2"]),
        (["a", "b"], ["no [UNK] line"]),
    ],
)
def test_bad_vocabulary_files_give_one_line_errors(tmp_path, lines, names):
    path = write_vocab(tmp_path, lines)
    with raises_one_line(str(path), *names):
        WordPieces.read(path)


def test_a_missing_or_binary_vocabulary_file_is_named(tmp_path):
    with raises_one_line("data.pieces", "nothing.txt", "not a file"):
        WordPieces.read(tmp_path / "nothing.txt")
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[UNK]\n\xff\xfe\n")
    with raises_one_line(str(path), "not UTF-8"):
        WordPieces.read(path)


def test_pieces_read_the_same_split_as_words_with_unknown_words_kept(shared_data, tmp_path):
    path = shared_data / "Airlines.csv"
    words = data.load_tweets(path, oov="unk")
    pieces = data.load_tweets(path, oov="drop", pieces=WordPieces.read(write_vocab(tmp_path)))
    for name in ("train", "val", "test"):
        ours, theirs = getattr(pieces, name), getattr(words, name)
        np.testing.assert_array_equal(ours.rows, theirs.rows)
        np.testing.assert_array_equal(ours.labels, theirs.labels)
    assert pieces.dropped_oov == {"train": 0, "val": 0, "test": 0}
    first = pieces.test.tokens[0, : pieces.test.lengths[0]]
    assert first.tolist() == pieces.vocab.encode(read_text(path, pieces.test.rows[0]))


def read_text(path: Path, row: int) -> str:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))[row]["text"]


def transfer_rows(n: int, seed: int) -> list[list[str]]:
    """Texts of each class's signal word, the tweets' or a new one, with a teacher's probabilities
    sure of that class."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = CLASSES[i % 3]
        text = sentence(label, rng, SIGNAL if i % 2 else NEW)
        rows.append([text, *("0.9" if c == label else "0.05" for c in CLASSES)])
    return rows


def test_a_transfer_set_is_read_with_its_probabilities(tmp_path):
    rows = [["0.7", "good crew", "0.1", "0.2"], ["0.25", "zebra", "0.5", "0.25"]]
    rows.append(["0.05", "bad gate", "0.8", "0.15"])
    path = write_rows(tmp_path / "t.csv", ["positive", "text", "negative", "neutral"], rows)
    pieces = WordPieces.read(write_vocab(tmp_path))
    split, probs, empty = load_transfer(path, CLASSES, pieces)
    # columns by name, not by place; every text read (an unknown word is a piece: [UNK])
    np.testing.assert_allclose(probs, [[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [0.8, 0.15, 0.05]])
    assert split.labels.tolist() == [2, 0, 0] and empty == 0
    assert pieces.decode(split.tokens[0, : split.lengths[0]].tolist()) == "good crew"
    # Words drop what their vocabulary does not know, and say how many texts were left out.
    vocab = Vocabulary(["good", "crew", "bad", "gate"])
    split, probs, empty = load_transfer(path, CLASSES, vocab)
    assert empty == 1 and split.rows.tolist() == [0, 2] and len(probs) == 2


@pytest.mark.parametrize(
    ("header", "row", "names"),
    [
        (
            ["text", "negative", "neutral"],
            ["good", "0.2", "0.8"],
            ["columns 'text', 'negative', 'neutral'", "'positive'"],
        ),
        (None, ["", "0.2", "0.3", "0.5"], ["line 2", "'text'", "empty text"]),
        (None, ["good", "0.2", "high", "0.5"], ["line 2", "'neutral'", "'high'", "probability"]),
        (None, ["good", "0.2", "-0.3", "1.1"], ["line 2", "'neutral'", "'-0.3'", "from 0 to 1"]),
        (None, ["good", "0.2", "0.3", "0.4"], ["line 2", "sum to 0.9", "not 1"]),
        (None, ["good", "0.2", "nan", "0.4"], ["line 2", "'nan'", "probability"]),
    ],
)
def test_bad_transfer_sets_give_one_line_errors(tmp_path, header, row, names):
    rows = [row] if row else [["good", "0.2", "0.3", "0.5"]]
    path = write_rows(tmp_path / "t.csv", header or ["text", *CLASSES], rows)
    with raises_one_line(str(path), *names):
        load_transfer(path, CLASSES, WordPieces.read(write_vocab(tmp_path)))


def test_an_empty_or_missing_transfer_set_is_named(tmp_path):
    pieces = WordPieces.read(write_vocab(tmp_path))
    with raises_one_line("data.transfer", "gone.csv", "not a file"):
        load_transfer(tmp_path / "gone.csv", CLASSES, pieces)
    path = write_rows(tmp_path / "t.csv", ["text", *CLASSES], [])
    with raises_one_line(str(path), "no texts"):
        load_transfer(path, CLASSES, pieces)


@pytest.fixture
def tweets_and_transfer(tmp_path):
    """Tweets labelled by their signal word, a vocabulary of their pieces, and a transfer set whose
    teacher also knows words no tweet has: what the student answers on them shows what it read."""
    rng = random.Random(0)
    labels = [CLASSES[i % 3] for i in range(300)]
    tweets = write_rows(
        tmp_path / "tweets.csv",
        ["text", "twsentiment"],
        [[sentence(label, rng), label] for label in labels],
    )
    transfer = write_rows(tmp_path / "transfer.csv", ["text", *CLASSES], transfer_rows(600, 1))
    sets = [
        f"data.path='{tweets}'", f"data.pieces='{write_vocab(tmp_path)}'",
        f"data.transfer='{transfer}'", "train.distill_weight=1.0",
        "train.distill_temperature=1.0", "train.epochs=4", "train.batch_size=20", "train.lr=0.05",
        "model.embedding=8", "model.hidden=8", "train.seed=0",
    ]  # fmt: skip
    return [a for s in sets for a in ("--set", s)]


def test_a_student_learns_the_transfer_sets_texts_and_probabilities(
    capsys, tmp_path, tweets_and_transfer
):
    out = tmp_path / "student"
    code, _, err = rnnlab(capsys, "run", "sentiment", "--out", str(out), *tweets_and_transfer)
    assert code == 0, err
    assert "trained on the transfer set" in err and "600 texts, in place of the 240 training" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_examples"] == 600
    assert metrics["test_accuracy"] > 0.9
    # Words only the transfer set holds: a model of the tweets alone guesses, 1 in 27 all right.
    expected = ["positive", "negative", "neutral"]
    assert answers(capsys, out, "thanks crew", "delayed flight", "where gate") == expected
    # The saved model reads pieces without the vocabulary file, and eval needs no transfer set.
    (tmp_path / "vocab.txt").rename(tmp_path / "moved.txt")
    (tmp_path / "transfer.csv").unlink()
    assert json.loads((out / "model.json").read_text())["vocab"].startswith('{"pieces"')
    assert answers(capsys, out, "it was delayed") == ["negative"]
    # The gates over a text show its pieces, as the model read them.
    code, stdout, err = rnnlab(capsys, "diagnose", "gates", str(out), "--text", "Unfriendly crew")
    assert code == 0 and "gates of 4 tokens" in stdout + err, err


def answers(capsys, run_dir: Path, *texts: str) -> list[str]:
    """The labels ``rnnlab predict`` gives ``texts``."""
    path = run_dir.parent / "answers.csv"
    code, _, err = rnnlab(capsys, "predict", str(run_dir), *texts, "--csv", str(path))
    assert code == 0, err
    with open(path, newline="", encoding="utf-8") as f:
        return [row["label"] for row in csv.DictReader(f)]


def test_a_transfer_set_and_teacher_runs_together_are_refused(
    capsys, tmp_path, tweets_and_transfer
):
    out = tmp_path / "student"
    code, _, err = rnnlab(
        capsys, "run", "sentiment", "--out", str(out), *tweets_and_transfer,
        "--set", f"train.teachers=['{tmp_path}']",
    )  # fmt: skip
    assert_one_line_error(code, err, "data.transfer", "train.teachers", "use one")


def test_the_teachers_inputs_and_copies(tmp_path):
    """benchmarks/transformer_teacher.py's parts that need no transformer."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import transformer_teacher as tt
    finally:
        sys.path.pop(0)
    inputs = tt.Inputs(WordPieces.read(write_vocab(tmp_path)))
    (short, long) = inputs.encode(["the flight", "crew " * 100])
    assert short == [PIECES.index(p) for p in ("[CLS]", "the", "flight", "[SEP]")]
    assert len(long) == tt.MAX_PIECES and long[-1] == PIECES.index("[SEP]")
    ids, mask = tt.Inputs.batch([short, long])
    assert ids.shape == (2, tt.MAX_PIECES) and mask[0].tolist() == [1] * 4 + [0] * 60
    text = "one two three four five six seven eight"
    copies = [tt.augment(text, random.Random(s)) for s in range(200)]
    assert copies == [tt.augment(text, random.Random(s)) for s in range(200)]  # seeded
    for copy in copies:  # the text's own words, in its order: spans and drops only
        at = [text.split().index(w) for w in copy.split()]
        assert at and at == sorted(set(at))
    assert any(len(c.split()) <= 5 for c in copies) and any(c == text for c in copies)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs 0: expected at least 1"),
        (["--copies", "-1"], "--copies -1: expected at least 0"),
        (["--lr", "0"], "--lr 0.0: expected a number above 0"),
    ],
)
def test_the_teacher_refuses_bad_settings_before_any_work(tmp_path, args, message):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "transformer_teacher.py"
    out = tmp_path / "teacher"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(out), *args], capture_output=True, text=True
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not out.exists()
