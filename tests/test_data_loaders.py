"""Loaders on the lab's real files, and one test per bad input: a one-line error naming the file."""

import csv
import re
from collections import Counter

import numpy as np
import pytest
from conftest import raises_one_line
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data import (
    Vocabulary,
    lag_windows,
    load_air_quality,
    load_csv_series,
    load_tweets,
    load_ucr,
    persistence,
    with_asinh,
)
from rnnlab.data.tweets import clean

# --- air quality -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def london(shared_data):
    with np.load(shared_data / "LondonAQ.npz") as npz:
        return {k: npz[k] for k in npz.files}


def test_air_quality_follows_the_lab_split_and_window_shapes(shared_data):
    data = load_air_quality(shared_data / "LondonAQ.npz")
    assert data.x_train.shape == (35064 - 6, 6, 1) and data.x_train.dtype == np.float32
    assert data.y_train.shape == (35064 - 6,) and data.y_test.shape == (8784 - 6,)
    assert data.x_test.shape == (8784 - 6, 6, 1) and data.y_test.dtype == np.float32


def test_air_quality_scaler_uses_training_rows_only(shared_data, london):
    raw = london["GWoolwich"][:, [0, 3]]
    data = load_air_quality(shared_data / "LondonAQ.npz", "GWoolwich", columns=(0, 3))
    np.testing.assert_allclose(data.scaler.mean, raw[:35064].mean(axis=0))
    np.testing.assert_allclose(data.scaler.std, raw[:35064].std(axis=0))
    assert not np.allclose(data.scaler.mean, raw[: 35064 + 8784].mean(axis=0))  # the lab's leak


def test_air_quality_targets_and_persistence_in_raw_units(shared_data, london):
    lag, ahead, test = 4, 3, london["GEltham"][35064 : 35064 + 8784, 0]
    data = load_air_quality(shared_data / "LondonAQ.npz", lag=lag, ahead=ahead)
    np.testing.assert_allclose(data.to_raw(data.y_test), test[lag + ahead - 1 :], atol=1e-4)
    last_seen = test[lag - 1 : len(test) - ahead]
    np.testing.assert_allclose(data.to_raw(persistence(data.x_test)), last_seen, atol=1e-4)


def test_neighbour_sites_add_their_columns_hour_by_hour(shared_data, london):
    path = shared_data / "LondonAQ.npz"
    data = load_air_quality(path, columns=(0, 2), neighbours=("GWoolwich",), lag=3)
    assert data.columns == ("GEltham[0]", "GEltham[2]", "GWoolwich[0]", "GWoolwich[2]")
    assert data.x_train.shape == (35064 - 3, 3, 4)
    raw = np.concatenate([london["GEltham"][:, [0, 2]], london["GWoolwich"][:, [0, 2]]], axis=1)
    np.testing.assert_allclose(data.scaler.mean, raw[:35064].mean(axis=0))
    # The target is still the site's own first column.
    plain = load_air_quality(path, lag=3)
    np.testing.assert_array_equal(data.y_test, plain.y_test)
    with raises_one_line("LondonAQ.npz", "'Woolwich'", "did you mean 'GWoolwich'"):
        load_air_quality(path, neighbours=("Woolwich",))


def test_asinh_scale_adds_each_columns_compressed_view_and_keeps_the_target(shared_data, london):
    path, lag = shared_data / "LondonAQ.npz", 3
    data = load_air_quality(path, neighbours=("GWoolwich",), lag=lag, asinh_scale=10.0)
    plain = load_air_quality(path, neighbours=("GWoolwich",), lag=lag)
    assert data.columns == plain.columns == ("GEltham[0]", "GWoolwich[0]")
    assert data.x_train.shape == (35064 - lag, lag, 4) and data.x_test.shape[-1] == 4
    np.testing.assert_array_equal(data.y_test, plain.y_test)  # still the raw reading
    np.testing.assert_allclose(data.x_train[..., :2], plain.x_train)
    # the added columns: asinh(reading / 10), standardised on the training rows
    raw = np.stack([london["GEltham"][:, 0], london["GWoolwich"][:, 0]], axis=1)
    view = np.arcsinh(raw / 10.0)
    expected = (view - view[:35064].mean(axis=0)) / view[:35064].std(axis=0)
    np.testing.assert_allclose(data.x_test[:, -1, 2:], expected[35064 + lag - 1 : -1], atol=1e-5)
    # spikes are compressed: the highest hour stands far fewer standard units out than raw
    assert data.x_train[..., 2].max() < data.x_train[..., 0].max() / 2
    assert raw.min() < 0 and np.isfinite(view).all()  # defined for the negative readings too
    assert with_asinh(raw, None) is raw
    for scale in (0.0, -10.0):  # from Python too, not only through the config's check
        with raises_one_line("asinh scale must be > 0", str(scale)):
            with_asinh(raw, scale)


def test_unknown_site_suggests_the_closest(shared_data):
    with raises_one_line("LondonAQ.npz", "'Geltham'", "did you mean 'GEltham'"):
        load_air_quality(shared_data / "LondonAQ.npz", site="Geltham")


def test_npz_that_is_not_an_archive_is_reported(tmp_path):
    (tmp_path / "LondonAQ.npz").write_bytes(b"PK\x03\x04 truncated")
    with raises_one_line("LondonAQ.npz", "not a readable .npz"):
        load_air_quality(tmp_path / "LondonAQ.npz")


@settings(max_examples=50, deadline=None)
@given(
    length=st.integers(2, 40),
    features=st.integers(1, 3),
    lag=st.integers(1, 6),
    ahead=st.integers(1, 4),
)
def test_lag_windows_pair_each_window_with_the_value_ahead(length, features, lag, ahead):
    series = np.arange(length * features, dtype=float).reshape(length, features)
    if length < lag + ahead:
        with raises_one_line("too short"):
            lag_windows(series, lag, ahead)
        return
    x, y = lag_windows(series, lag, ahead)
    assert len(x) == len(y) == length - lag - ahead + 1
    for i in range(len(x)):
        np.testing.assert_array_equal(x[i], series[i : i + lag])
        assert y[i] == series[i + lag - 1 + ahead, 0]


# --- any CSV series ---------------------------------------------------------------------------


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_csv_series_by_header_name_with_default_split(tmp_path):
    rows = [["date", "load", "temp"]] + [[f"d{i}", i, 10 * i] for i in range(50)]
    data = load_csv_series(write_csv(tmp_path / "s.csv", rows), columns=("load", "temp"), lag=3)
    assert data.columns == ("load", "temp")
    assert data.x_train.shape == (40 - 3, 3, 2) and data.x_test.shape == (10 - 3, 3, 2)
    np.testing.assert_allclose(data.to_raw(data.y_test), np.arange(43, 50), atol=1e-4)
    assert data.scaler.mean[0] == pytest.approx(np.arange(40).mean())


def test_csv_without_header_keeps_its_first_row_beside_a_text_column(tmp_path):
    """A date column is text in every row: the first row is data, not a header to drop."""
    rows = [[f"2020-01-{i + 1:02d}", i] for i in range(20)]
    data = load_csv_series(write_csv(tmp_path / "s.csv", rows), columns=(1,), lag=3)
    assert data.columns == ("1",)
    assert data.x_train.shape == (16 - 3, 3, 1)
    assert data.scaler.mean[0] == pytest.approx(np.arange(16).mean())


def test_csv_row_with_wrong_field_count_names_the_line(tmp_path):
    path = write_csv(tmp_path / "s.csv", [["a", "b"], [1, 2], [3], [5, 6]])
    with raises_one_line("s.csv", "line 3", "1 fields, expected 2"):
        load_csv_series(path)


def test_csv_non_numeric_value_names_line_and_column(tmp_path):
    path = write_csv(tmp_path / "s.csv", [[1, 2], [3, "x"], [5, 6]])
    with raises_one_line("s.csv", "line 2, column 2", "'x' is not a number"):
        load_csv_series(path, columns=(1,))


def test_csv_unknown_column_lists_the_columns(tmp_path):
    path = write_csv(tmp_path / "s.csv", [["a", "b"], [1, 2]])
    with raises_one_line("s.csv", "no column 'c'", "a, b"):
        load_csv_series(path, columns=("c",))


# --- UCR ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def electric(electric_files):
    return load_ucr(*electric_files)


def test_ucr_shapes_and_label_counts(electric_files, electric):
    assert electric.x_train.shape == (8926, 96, 1) and electric.x_train.dtype == np.float32
    assert electric.x_test.shape == (7711, 96, 1) and electric.y_test.dtype == np.int64
    assert electric.classes.tolist() == [1, 2, 3, 4, 5, 6, 7]
    with open(electric_files[0]) as f:
        raw = Counter(int(re.split("[\t,]", line, maxsplit=1)[0]) for line in f)
    assert {
        int(electric.classes[k]): n for k, n in Counter(electric.y_train.tolist()).items()
    } == raw


def test_ucr_csv_copy_reads_as_the_tsv(electric_files, tmp_path):
    lines = electric_files[1].read_text().replace(",", "\t").splitlines()[::200]  # every class
    (tmp_path / "E_TRAIN.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "E_TRAIN.csv").write_text("\n".join(line.replace("\t", ",") for line in lines))
    a = load_ucr(tmp_path / "E_TRAIN.tsv", tmp_path / "E_TRAIN.tsv")
    b = load_ucr(tmp_path / "E_TRAIN.csv", tmp_path / "E_TRAIN.csv", znorm=True)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_allclose(b.x_train.mean(axis=1), 0, atol=1e-5)
    varying = a.x_train.std(axis=1)[:, 0] > 0
    np.testing.assert_allclose(b.x_train.std(axis=1)[varying], 1, atol=1e-4)


def test_ucr_differences_add_each_steps_change_as_a_second_feature(tmp_path):
    (tmp_path / "X_TRAIN.tsv").write_text("1\t1.0\t3.0\t2.0\n2\t0.0\t0.0\t5.0\n")
    data = load_ucr(tmp_path / "X_TRAIN.tsv", tmp_path / "X_TRAIN.tsv", differences=True)
    assert data.x_train.shape == (2, 3, 2)
    np.testing.assert_array_equal(data.x_train[0], [[1, 0], [3, 2], [2, -1]])
    np.testing.assert_array_equal(data.x_test[1], [[0, 0], [0, 0], [5, 5]])


def test_ucr_sorted_levels_add_each_series_readings_lowest_first(tmp_path):
    (tmp_path / "X_TRAIN.tsv").write_text("1\t1.0\t3.0\t2.0\n2\t5.0\t0.0\t0.0\n")
    data = load_ucr(
        tmp_path / "X_TRAIN.tsv", tmp_path / "X_TRAIN.tsv", differences=True, sorted_levels=True
    )
    assert data.x_train.shape == (2, 3, 3)  # reading, change, the series' levels in order
    np.testing.assert_array_equal(data.x_train[0], [[1, 0, 1], [3, 2, 2], [2, -1, 3]])
    np.testing.assert_array_equal(data.x_test[1, :, 2], [0, 0, 5])
    # sorted after z-normalising, so the levels are in the same units as the reading
    z = load_ucr(tmp_path / "X_TRAIN.tsv", tmp_path / "X_TRAIN.tsv", znorm=True, sorted_levels=True)
    np.testing.assert_allclose(z.x_train[..., 1], np.sort(z.x_train[..., 0], axis=1))


@pytest.mark.parametrize(
    "row, fragments",
    [
        ("1\t0.5\tabc", ("row 2, column 3", "'abc' is not a number")),
        ("1.5\t0.5\t0.5", ("row 2, column 1", "not an integer")),
        ("one\t0.5\t0.5", ("row 2, column 1", "not an integer class label")),
        ("1\t0.5", ("row 2 has 2 fields, expected 3",)),
    ],
)
def test_ucr_bad_row_names_row_and_column(tmp_path, row, fragments):
    (tmp_path / "X_TRAIN.tsv").write_text(f"1\t0.1\t0.2\n{row}\n2\t0.3\t0.4\n")
    with raises_one_line("X_TRAIN.tsv", *fragments):
        load_ucr(tmp_path / "X_TRAIN.tsv", tmp_path / "X_TRAIN.tsv")


def test_ucr_test_label_unseen_in_train_is_reported(tmp_path):
    (tmp_path / "X_TRAIN.csv").write_text("1,0.1,0.2\n2,0.3,0.4\n")
    (tmp_path / "X_TEST.csv").write_text("1,0.1,0.2\n3,0.3,0.4\n")
    with raises_one_line("X_TEST.csv", "row 2", "label 3"):
        load_ucr(tmp_path / "X_TRAIN.csv", tmp_path / "X_TEST.csv")


def test_ucr_missing_file(tmp_path):
    with raises_one_line("X_TRAIN.tsv", "no such file"):
        load_ucr(tmp_path / "X_TRAIN.tsv", tmp_path / "X_TEST.tsv")


# --- tweets ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def airlines(shared_data):
    return load_tweets(shared_data / "Airlines.csv", seed=3)


def test_tweets_stratified_split_keeps_class_balance_and_every_tweet_once(airlines):
    splits = (airlines.train, airlines.val, airlines.test)
    assert airlines.classes == ("negative", "neutral", "positive")
    rows = np.concatenate([s.rows for s in splits])
    assert len(rows) == len(set(rows.tolist()))  # no tweet in two splits
    assert len(rows) + airlines.dropped_empty + sum(airlines.dropped_oov.values()) == 14640
    counts = np.bincount(np.concatenate([s.labels for s in splits]), minlength=3)
    assert counts.sum() == len(rows)
    overall = np.array([9178, 3099, 2363]) / 14640
    for s, share in zip(splits, (0.8, 0.1, 0.1), strict=True):
        assert len(s.labels) == pytest.approx(share * len(rows), rel=0.01)
        np.testing.assert_allclose(
            np.bincount(s.labels, minlength=3) / len(s.labels), overall, atol=0.01
        )


def test_tweets_vocabulary_comes_from_the_training_split_only(shared_data, airlines):
    with open(shared_data / "Airlines.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    train_words = Counter(w for i in airlines.train.rows for w in clean(texts[i]))
    other_words = {
        w for s in (airlines.val, airlines.test) for i in s.rows for w in clean(texts[i])
    }
    assert set(airlines.vocab.words) <= set(train_words)
    assert len(airlines.vocab.words) == 5000
    only_elsewhere = other_words - set(train_words)
    assert only_elsewhere and not only_elsewhere & set(airlines.vocab.words)
    top = sorted(train_words, key=lambda w: (-train_words[w], w))[:20]
    assert airlines.vocab.words[:20] == top


def test_tweets_are_right_padded_with_lengths_and_encode_like_the_vocabulary(shared_data, airlines):
    s = airlines.train
    assert s.tokens.dtype == np.int64 and s.tokens.shape == (len(s.labels), s.lengths.max())
    filled = np.arange(s.tokens.shape[1]) < s.lengths[:, None]
    assert (s.tokens[filled] > 0).all() and (s.tokens[~filled] == 0).all()
    with open(shared_data / "Airlines.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    vocab = Vocabulary.from_json(airlines.vocab.to_json())
    for i in range(5):
        assert vocab.encode(texts[s.rows[i]]) == s.tokens[i, : s.lengths[i]].tolist()


def test_tweets_split_is_deterministic_for_a_seed(shared_data, airlines):
    again = load_tweets(shared_data / "Airlines.csv", seed=3)
    other = load_tweets(shared_data / "Airlines.csv", seed=4)
    np.testing.assert_array_equal(again.test.rows, airlines.test.rows)
    assert not np.array_equal(other.test.rows, airlines.test.rows)


def test_tweets_ordered_split_is_the_labs(shared_data):
    data = load_tweets(shared_data / "Airlines.csv", split="ordered", oov="unk")
    n = 14640 - data.dropped_empty
    a = int(n * 0.8)
    b = a + int((n - a) * 0.5)
    assert data.dropped_oov == {"train": 0, "val": 0, "test": 0}
    assert data.train.rows.tolist() == list(range(a))
    assert data.test.rows.tolist() == list(range(b, n))
    assert data.vocab.words[:3] and (data.test.tokens == 1).any()  # <unk> is id 1


def test_tweets_with_no_words_are_dropped_and_counted(tmp_path):
    rows = [["label", "body"]] + [["pos", f"good day {i}"] for i in range(20)]
    rows += [["neg", "@united 123 !!"], ["neg", "bad bad"]] + [["neg", "bad"] for _ in range(10)]
    path = write_csv(tmp_path / "t.csv", rows)
    data = load_tweets(path, text_column="body", label_column="label")
    assert data.dropped_empty == 1 and data.classes == ("neg", "pos")
    assert 20 not in np.concatenate([data.train.rows, data.val.rows, data.test.rows])


@pytest.mark.parametrize("missing", ["text_column", "label_column"])
def test_tweets_missing_column_is_named(tmp_path, missing):
    path = write_csv(tmp_path / "t.csv", [["twsentiment", "text"], ["pos", "fine"]])
    with raises_one_line("t.csv", "no column 'nope'", "'twsentiment', 'text'"):
        load_tweets(path, **{missing: "nope"})


def test_tweets_wrong_field_count(tmp_path):
    path = write_csv(tmp_path / "t.csv", [["twsentiment", "text"], ["pos", "fine"], ["neg"]])
    with raises_one_line("t.csv", "line 3 has 1 fields, expected 2"):
        load_tweets(path)


def test_missing_file_is_one_line(tmp_path):
    with raises_one_line("Airlines.csv", "no such file"):
        load_tweets(tmp_path / "Airlines.csv")
