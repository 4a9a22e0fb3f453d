"""The lab's data: a registry of named datasets with a verified cache, and one loader per kind of data."""

# addition's encode/decode/format_question stay under ``rnnlab.data.addition``: the names are generic
from rnnlab.data.addition import AdditionData, make_addition, parse_question, split_addition
from rnnlab.data.airquality import (
    RegressionData,
    Scaler,
    lag_windows,
    load_air_quality,
    load_csv_series,
    persistence,
)
from rnnlab.data.registry import DATASETS, data_dir, fetch
from rnnlab.data.text import (
    CharVocab,
    Corpus,
    char_streams,
    char_windows,
    load_corpus,
    stream_chunks,
)
from rnnlab.data.tweets import TextClassificationData, TokenSplit, Vocabulary, load_tweets
from rnnlab.data.ucr import ClassificationData, load_ucr

__all__ = [
    "DATASETS",
    "AdditionData",
    "CharVocab",
    "ClassificationData",
    "Corpus",
    "RegressionData",
    "Scaler",
    "TextClassificationData",
    "TokenSplit",
    "Vocabulary",
    "char_streams",
    "char_windows",
    "data_dir",
    "fetch",
    "lag_windows",
    "load_air_quality",
    "load_corpus",
    "load_csv_series",
    "load_tweets",
    "load_ucr",
    "make_addition",
    "parse_question",
    "persistence",
    "split_addition",
    "stream_chunks",
]
