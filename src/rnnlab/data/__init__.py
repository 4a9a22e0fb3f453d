"""The lab's data: a registry of named datasets with a verified cache, and one loader per kind of data."""

from rnnlab.lazy import exports

# addition's encode/decode/format_question stay under ``rnnlab.data.addition``: the names are generic
_MODULES = {
    "rnnlab.data.addition": ["AdditionData", "make_addition", "parse_question", "split_addition"],
    "rnnlab.data.airquality": [
        "RegressionData",
        "Scaler",
        "lag_windows",
        "load_air_quality",
        "load_csv_series",
        "persistence",
        "read_series",
        "windows",
        "with_asinh",
    ],
    "rnnlab.data.registry": ["DATASETS", "data_dir", "fetch"],
    "rnnlab.data.labelled": ["LabelledSeries", "read_labelled"],
    "rnnlab.data.text": [
        "CharVocab",
        "Corpus",
        "char_streams",
        "char_windows",
        "load_corpus",
        "stream_chunks",
    ],
    "rnnlab.data.tweets": ["TextClassificationData", "TokenSplit", "Vocabulary", "load_tweets"],
    "rnnlab.data.ucr": ["ClassificationData", "load_ucr", "read_ucr", "series_features"],
}
__getattr__, __dir__ = exports(__name__, _MODULES)
__all__ = sorted(name for names in _MODULES.values() for name in names)
