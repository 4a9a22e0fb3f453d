"""Property-based fuzzing of what users type: config overrides and files, tokenizers, questions.

Whatever the input, the outcome is either a valid value or an RnnlabError whose message is one
line; never another exception.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab.config import load_config, parse_override
from rnnlab.data.addition import format_question, parse_question
from rnnlab.data.text import CharVocab
from rnnlab.data.tweets import Vocabulary, clean
from rnnlab.errors import RnnlabError
from rnnlab.nn import RecurrentConfig
from rnnlab.training.config import TrainConfig

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECTIONS = {"data": RecurrentConfig, "model": RecurrentConfig, "train": TrainConfig}
KEYS = ["train.epochs", "train.lr", "model.cell", "model.hidden", "model.bidirectional",
        "train.clip_norm", "model.dropout", "train.optimizer", "train.nope", "x", "train."]  # fmt: skip


def _one_line(err: RnnlabError) -> None:
    assert "\n" not in str(err) and str(err)


@pytest.fixture(autouse=True)
def _toy_config(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("configs")
    (folder / "toy.toml").write_text('task = "toy"\n')
    monkeypatch.setattr("rnnlab.config.CONFIG_DIR", folder)


@FAST
@given(key=st.sampled_from(KEYS), value=st.text(max_size=12))
def test_any_override_gives_a_config_or_a_one_line_error(key, value):
    try:
        cfg = load_config("toy", SECTIONS, overrides=[f"{key}={value}"])
    except RnnlabError as err:
        _one_line(err)
    else:
        assert cfg.train.epochs >= 1 and cfg.model.hidden >= 1


@FAST
@given(text=st.text(max_size=30))
def test_parse_override_never_crashes(text):
    try:
        section, key, _ = parse_override(text)
    except RnnlabError as err:
        _one_line(err)
    else:
        assert section in ("data", "model", "train") and key


@FAST
@given(body=st.text(max_size=80))
def test_any_config_file_gives_a_config_or_a_one_line_error(tmp_path_factory, body):
    path = tmp_path_factory.mktemp("c") / "c.toml"
    path.write_text(body, encoding="utf-8")
    try:
        load_config("toy", SECTIONS, path)
    except RnnlabError as err:
        _one_line(err)
        assert str(path) in str(err) or "config key" in str(err)


@FAST
@given(text=st.text(max_size=40), known=st.text(alphabet=string.ascii_lowercase, min_size=1))
def test_char_vocab_round_trips_or_names_the_unknown_character(text, known):
    vocab = CharVocab.of(known)
    try:
        ids = vocab.encode(text)
    except RnnlabError as err:
        _one_line(err)
        assert any(c not in known for c in text)
    else:
        assert vocab.decode(ids) == text


@FAST
@given(text=st.text(max_size=60))
def test_tweet_cleaning_and_vocabulary_never_crash(text):
    words = clean(text)
    # The lab's cleaning: letters and "@" only, lower case, no word starting with "@".
    assert all(set(w) <= set(string.ascii_lowercase + "@") and w[0] != "@" for w in words)
    vocab = Vocabulary.build([words, ["flight", "delayed"]], num_words=5, unk=True)
    ids = vocab.encode(text)
    assert len(ids) == len(words) and all(0 < i < len(vocab) for i in ids)


@FAST
@given(text=st.text(alphabet="0123456789+ -ab", max_size=10), digits=st.integers(1, 4))
def test_addition_parser_accepts_exactly_well_formed_questions(text, digits):
    try:
        a, b = parse_question(text, digits)
    except RnnlabError as err:
        _one_line(err)
    else:
        left, right = text.replace(" ", "").split("+")
        assert left.isdigit() and right.isdigit() and max(len(left), len(right)) <= digits
        assert (int(left), int(right)) == (a, b)


@FAST
@given(a=st.integers(0, 999), b=st.integers(0, 999), reverse=st.booleans())
def test_formatted_questions_parse_back(a, b, reverse):
    question = format_question(a, b, 3, reverse)
    assert parse_question(question[::-1] if reverse else question, 3) == (a, b)
