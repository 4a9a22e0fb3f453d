"""Character corpora, windows, BPTT streams and the addition generator (with hypothesis)."""

import gzip

import pytest
import torch
from conftest import raises_one_line
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data import (
    CharVocab,
    addition,
    char_streams,
    char_windows,
    load_corpus,
    make_addition,
    parse_question,
    split_addition,
    stream_chunks,
)

# --- corpus ------------------------------------------------------------------------------------


def test_corpus_is_lower_cased_without_bom_and_split_90_10(shared_data):
    corpus = load_corpus(shared_data / "poetry1.txt.gz")
    with gzip.open(shared_data / "poetry1.txt.gz", "rt", encoding="utf-8") as f:
        raw = f.read()
    assert corpus.text == raw.replace("\ufeff", "").lower()
    assert len(corpus.train) == int(0.9 * len(corpus.text))
    assert corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.val) == corpus.text
    assert corpus.train.dtype == torch.int64 and "\ufeff" not in corpus.vocab.chars


def test_corpus_holds_out_a_test_text_after_the_validation_text(shared_data):
    corpus = load_corpus(shared_data / "poetry1.txt.gz", val_fraction=0.1, test_fraction=0.05)
    n = len(corpus.text)
    assert (len(corpus.train), len(corpus.test)) == (int(0.85 * n), int(0.05 * n))
    parts = (corpus.train, corpus.val, corpus.test)
    assert "".join(corpus.vocab.decode(p) for p in parts) == corpus.text
    assert len(load_corpus(shared_data / "poetry1.txt.gz").test) == 0  # the lab's: none


def test_corpus_can_keep_case_and_vocab_round_trips_through_json(shared_data):
    corpus = load_corpus(shared_data / "poetry1.txt.gz", lower=False)
    assert any(c.isupper() for c in corpus.vocab.chars)
    vocab = CharVocab.from_json(corpus.vocab.to_json())
    assert vocab.chars == corpus.vocab.chars
    assert torch.equal(vocab.encode(corpus.text[-100:]), corpus.val[-100:])


def test_plain_text_file_works(tmp_path):
    (tmp_path / "mine.txt").write_text("\ufeffHello world, hello RNN.\n", encoding="utf-8")
    assert load_corpus(tmp_path / "mine.txt").text == "hello world, hello rnn.\n"


def test_truncated_gzip_is_one_line_error(shared_data, tmp_path):
    data = (shared_data / "poetry1.txt.gz").read_bytes()
    (tmp_path / "poetry1.txt.gz").write_bytes(data[: len(data) // 2])
    with raises_one_line("poetry1.txt.gz", "truncated or corrupt gzip"):
        load_corpus(tmp_path / "poetry1.txt.gz")


def test_file_that_is_not_gzip_is_one_line_error(tmp_path):
    (tmp_path / "poem.txt.gz").write_text("plain text, not gzip")
    with raises_one_line("poem.txt.gz", "gzip"):
        load_corpus(tmp_path / "poem.txt.gz")


@pytest.mark.parametrize("name, content", [("empty.txt", b""), ("blank.txt.gz", None)])
def test_empty_text_file_is_one_line_error(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        path.write_bytes(gzip.compress(b"\xef\xbb\xbf \n\n"))  # a BOM and whitespace only
    else:
        path.write_bytes(content)
    with raises_one_line(name, "no text"):
        load_corpus(path)


def test_character_outside_the_vocabulary_is_named():
    with raises_one_line("'z'", "not in the vocabulary"):
        CharVocab("ab").encode("abz")


ids_strategy = st.lists(st.integers(0, 40), min_size=1, max_size=300).map(torch.tensor)


@settings(max_examples=60, deadline=None)
@given(ids=ids_strategy, maxlen=st.integers(1, 20), step=st.integers(1, 7))
def test_every_window_target_is_the_next_character(ids, maxlen, step):
    if len(ids) <= maxlen:
        with raises_one_line("maxlen"):
            char_windows(ids, maxlen, step)
        return
    x, y = char_windows(ids, maxlen, step)
    starts = range(0, len(ids) - maxlen, step)  # the lab's loop
    assert x.shape == (len(starts), maxlen) and y.shape == (len(starts),)
    for row, i in enumerate(starts):
        assert torch.equal(x[row], ids[i : i + maxlen])
        assert y[row] == ids[i + maxlen]


@settings(max_examples=60, deadline=None)
@given(length=st.integers(2, 400), batch_size=st.integers(1, 16), bptt=st.integers(1, 50))
def test_streams_predict_every_next_character_exactly_once_per_epoch(length, batch_size, bptt):
    positions = torch.arange(
        length
    )  # ids = positions, so a target can be checked against its input
    if length - 1 < batch_size:
        with raises_one_line("batch_size"):
            char_streams(positions, batch_size)
        return
    streams = char_streams(positions, batch_size)
    inputs, targets = [], []
    for x, y in stream_chunks(streams, bptt):
        assert x.shape == y.shape and x.shape[0] == batch_size and 1 <= x.shape[1] <= bptt
        inputs.append(x)
        targets.append(y)
    x, y = torch.cat(inputs, dim=1), torch.cat(targets, dim=1)
    assert torch.equal(y, x + 1)  # every target is the character after its input
    per_stream = (length - 1) // batch_size
    assert torch.equal(x.flatten(), torch.arange(batch_size * per_stream))  # once each, in order
    assert length - 1 - batch_size * per_stream < batch_size  # only a short tail is left out


# --- addition ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    digits=st.integers(1, 3),
    n=st.integers(1, 55),
    reverse=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_addition_answers_are_sums_of_distinct_pairs(digits, n, reverse, seed):
    data = make_addition(n, digits, reverse, seed)
    assert len(data.questions) == len(data.answers) == len(data.pairs) == n
    for question, answer, (a, b) in zip(data.questions, data.answers, data.operands, strict=True):
        assert len(question) == 2 * digits + 1 and len(answer) == digits + 1
        assert parse_question(question[::-1] if reverse else question, digits) == (a, b)
        assert int(answer) == a + b and answer == answer.rstrip().ljust(digits + 1)
    assert make_addition(n, digits, reverse, seed) == data


def test_addition_pads_like_the_keras_example():
    data = make_addition(200, digits=3, reverse=False, seed=1)
    (a, b), q = data.operands[0], data.questions[0]
    assert q == f"{a}+{b}" + " " * (7 - len(f"{a}+{b}"))
    assert make_addition(200, 3, True, 1).questions[0] == q[::-1]


def test_addition_can_use_every_pair_but_not_one_more():
    every = make_addition(55, digits=1)
    assert every.pairs == {(a, b) for a in range(10) for b in range(a, 10)}
    with raises_one_line("n=56", "55 distinct pairs"):
        make_addition(56, digits=1)
    with raises_one_line("n=50", "45 distinct pairs", "outside exclude"):
        make_addition(50, digits=1, exclude={(b, a) for a, b in list(every.pairs)[:10]})


def test_addition_split_and_exclude_keep_pairs_apart():
    test = make_addition(300, digits=2, seed=9)
    train, val = split_addition(2000, 500, digits=2, seed=9, exclude=test.pairs)
    assert len(train.questions) == 2000 and len(val.questions) == 500
    assert not train.pairs & val.pairs and not (train.pairs | val.pairs) & test.pairs


def test_addition_draws_extend_with_n():
    assert make_addition(10, seed=5).operands == make_addition(5000, seed=5).operands[:10]


def test_addition_encode_decode_round_trip():
    data = make_addition(20, digits=3)
    ids = addition.encode(data.questions)
    assert ids.shape == (20, 7) and ids.dtype == torch.int64
    assert addition.decode(ids) == data.questions
    assert addition.VOCAB.chars[0] == " "  # padding is id 0


@pytest.mark.parametrize("text", ["12++3", "1a+2", "1234+1", "", "+", "1+", "1-2", "1+2+3", "٣+1"])
def test_parse_question_rejects_malformed_input(text):
    with raises_one_line(repr(text), "expected 'a+b' with 1 to 3 digits each"):
        parse_question(text, digits=3)


def test_parse_question_accepts_spaces():
    assert parse_question(" 12 + 345 ", digits=3) == (12, 345)
