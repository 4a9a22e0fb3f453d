"""Your own labelled series: a task that learns without tuning, and says when it did not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, rnnlab

from rnnlab.tasks import SeriesClassification


def _waves(path: Path, n: int, length: int, seed: int, shuffled: bool = False) -> str:
    """A CSV with a header: sines and square waves of random phase and frequency, labels as
    words in the last column (``shuffled``: labels that say nothing about the series)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    rows = []
    for i in range(n):
        kind = ["sine", "square"][i % 2]
        wave = np.sin(2 * np.pi * (rng.uniform(2, 4) * t + rng.uniform()))
        wave = np.sign(wave) if kind == "square" else wave
        rows.append([*(wave + rng.normal(0, 0.1, length)).round(4), kind])
    if shuffled:
        labels = [r[-1] for r in rows]
        rng.shuffle(labels)
        rows = [[*r[:-1], label] for r, label in zip(rows, labels, strict=True)]
    header = [f"t{k}" for k in range(length)] + ["shape"]
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return str(path)


def _sets(*sets: str) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


QUICK = ["data.label='shape'", "train.steps=150", "train.threads=1"]


def test_a_users_csv_learns_with_the_defaults_and_predicts(capsys, tmp_path):
    train = _waves(tmp_path / "train.csv", 60, 64, seed=0)
    test = _waves(tmp_path / "test.csv", 40, 64, seed=1)
    out = tmp_path / "run"
    args = ["run", "series-classification", "--device", "cpu", "--out", str(out)]
    code, _, err = rnnlab(
        capsys, *args, *_sets(f"data.train='{train}'", f"data.test='{test}'", *QUICK)
    )
    assert code == 0, err
    said = err.replace("\n", " ")
    assert "2 classes of 24 to 24 training series each; 64 readings a series" in said
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.9 and metrics["learned"] is True
    assert metrics["majority_accuracy"] == 0.5
    # 60 series are too few to hold a fifth out: a fresh model learned from all of them.
    assert "training a fresh model on all 60 training and validation examples" in said
    assert metrics["refit_epochs"] == metrics["epochs"]
    code, stdout, err = rnnlab(capsys, "predict", str(out), test)
    assert code == 0, err
    assert stdout.count("square") >= 20


def test_one_file_is_split_into_training_and_test_series(tmp_path):
    train = _waves(tmp_path / "all.csv", 60, 32, seed=0)
    cfg = SeriesClassification.config(None, [f"data.train='{train}'", *QUICK])
    task = SeriesClassification(cfg)
    task.load()
    sizes = {name: len(split["y"]) for name, split in task.splits.items()}
    assert sizes == {"train": 34, "val": 8, "test": 18}
    t = task.cfg.train  # batches of 8, 5 a pass: epochs of 4 passes (20 steps), at least 10 epochs
    assert (t.batch_size, t.passes, t.epochs) == (8, 4, 10)


def test_long_series_are_read_through_a_learned_front_end(tmp_path):
    train = _waves(tmp_path / "long.csv", 20, 450, seed=0)
    cfg = SeriesClassification.config(None, [f"data.train='{train}'", *QUICK])
    task = SeriesClassification(cfg)
    task.load()
    assert "read 5 readings a step" in task.prepare_training()  # at most 100 steps of 450
    model = task.build_model()
    assert model.frontend is not None and model.frontend.stride == 5


def test_a_run_that_did_not_learn_says_so_with_what_to_try(capsys, tmp_path):
    train = _waves(tmp_path / "noise.csv", 80, 32, seed=0, shuffled=True)
    out = tmp_path / "run"
    args = ["run", "series-classification", "--device", "cpu", "--quiet", "--out", str(out)]
    code, _, err = rnnlab(capsys, *args, *_sets(f"data.train='{train}'", *QUICK))
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["learned"] is False
    assert "not clearly better than the majority class" in metrics["not_learned"]["message"]
    assert "warning: did not learn" in err and "to try:" in err


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        ([], ["data.train is not set"]),
        (["data.label='kind'"], ["no column named 'kind'"]),
        (["model.downsample=-1"], ["model.downsample"]),
        (["train.steps=0"], ["train.steps"]),
    ],
)
def test_bad_settings_are_one_line_errors(capsys, tmp_path, sets, words):
    train = _waves(tmp_path / "train.csv", 20, 16, seed=0)
    extra = [f"data.train='{train}'"] if sets else []
    code, _, err = rnnlab(
        capsys, "run", "series-classification", "--out", str(tmp_path / "r"), *_sets(*extra, *sets)
    )
    assert_one_line_error(code, err, *words)


def test_a_test_label_unseen_in_training_is_refused(capsys, tmp_path):
    train = _waves(tmp_path / "train.csv", 20, 16, seed=0)
    test = tmp_path / "test.csv"
    test.write_text(Path(train).read_text().replace("square", "triangle"))
    code, _, err = rnnlab(
        capsys, "run", "series-classification", "--out", str(tmp_path / "r"),
        *_sets(f"data.train='{train}'", f"data.test='{test}'", "data.label='shape'"),
    )  # fmt: skip
    assert_one_line_error(code, err, str(test), "'triangle'", "never occurs")
