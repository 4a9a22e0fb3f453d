"""Your own texts and your own series to forecast: the lab's recipes on a user's CSV."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from cli_helpers import assert_one_line_error, rnnlab


def _sets(*sets: str) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


def _reviews(path: Path, n: int) -> str:
    """Reviews whose words tell their stars, in columns named as a user's export names them."""
    rng = np.random.default_rng(0)
    good, bad, filler = (
        ["great", "lovely", "superb"],
        ["awful", "broken", "dreadful"],
        ["the", "item", "was", "really", "quite"],
    )
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "stars"])
        for i in range(n):
            stars = "five" if i % 3 else "one"
            words = [*rng.choice(filler, 4), rng.choice(good if stars == "five" else bad)]
            rng.shuffle(words)
            writer.writerow([i, " ".join(words), stars])
    return str(path)


def test_a_users_texts_learn_and_the_class_balance_is_said_first(capsys, tmp_path):
    path = _reviews(tmp_path / "reviews.csv", 300)
    out = tmp_path / "run"
    sets = [f"data.path='{path}'", "data.text_column='review'", "data.label_column='stars'"]
    sets += ["train.threads=1", "train.epochs=6"]
    code, _, err = rnnlab(capsys, "run", "text-classification", "--out", str(out), *_sets(*sets))
    assert code == 0, err
    said = err.replace("\n", " ")
    assert "2 classes in 300 texts: five 200 (66.7 %), one 100 (33.3 %)" in said
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.95 and metrics["learned"] is True
    code, stdout, err = rnnlab(capsys, "predict", str(out), "really awful item")
    assert code == 0, err
    assert "one" in stdout


def test_a_users_series_is_forecast_better_than_persistence(capsys, tmp_path):
    path = tmp_path / "load.csv"
    rng = np.random.default_rng(0)
    rows = [
        (math.sin(2 * math.pi * t / 24) + 0.05 * rng.normal(), 20 + math.cos(t / 50))
        for t in range(3000)
    ]
    path.write_text("load,temp\n" + "".join(f"{a:.4f},{b:.3f}\n" for a, b in rows))
    out = tmp_path / "run"
    sets = [f"data.path='{path}'", "data.columns=['load', 'temp']", "train.threads=1"]
    sets += ["train.epochs=8"]
    code, _, err = rnnlab(
        capsys, "run", "series-forecast", "--quiet", "--out", str(out), *_sets(*sets)
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_mse"] < metrics["persistence_mse"] / 2 and metrics["learned"] is True
    tail = tmp_path / "tail.csv"
    tail.write_text("load,temp\n" + "".join(f"{a:.4f},{b:.3f}\n" for a, b in rows[-30:]))
    code, stdout, err = rnnlab(capsys, "predict", str(out), str(tail))
    assert code == 0, err
    assert stdout.count("\n") > 7  # one forecast per window of 24 rows


def test_a_users_task_without_its_file_names_the_key(capsys, tmp_path):
    for task in ("text-classification", "series-forecast"):
        code, _, err = rnnlab(capsys, "run", task, "--out", str(tmp_path / task))
        assert_one_line_error(code, err, "data.path is not set")
