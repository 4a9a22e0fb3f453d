"""Tasks 1-3 end to end on small slices: run directory, eval, predict, baselines, bad configs."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, rnnlab
from slices import ucr_slice

from rnnlab.runs.restore import restore, task_of

RUN_FILES = {"config.toml", "history.csv", "metrics.json", "model.safetensors", "model.json"}
COMMON_KEYS = {"train_seconds", "epochs", "parameters", "device", "precision", "rnnlab_version"}


def _run(capsys, shared_data, tmp_path, task, *sets):
    out = tmp_path / task
    args = ["run", task, "--quiet", "--device", "cpu", "--out", str(out)]
    args += ["--data-dir", str(shared_data)]
    for s in sets:
        args += ["--set", s]
    code, _stdout, stderr = rnnlab(capsys, *args)
    assert code == 0, stderr
    return out, json.loads((out / "metrics.json").read_text())


def _eval(capsys, shared_data, out):
    code, stdout, stderr = rnnlab(capsys, "eval", str(out), "--data-dir", str(shared_data))
    assert code == 0, stderr
    return stdout


def test_air_quality_run_dir_eval_and_beats_persistence(capsys, shared_data, tmp_path):
    out, metrics = _run(
        capsys, shared_data, tmp_path, "air-quality",
        "data.train_rows=6000", "data.test_rows=2000", "train.epochs=6",
        "train.batch_size=64", "train.lr=0.005",
    )  # fmt: skip
    assert RUN_FILES | {"learning_curves.png", "predictions.png"} <= {p.name for p in out.iterdir()}
    keys = {"test_mse", "test_r2", "test_mae", "persistence_mse", "persistence_r2"}
    assert keys | {k + "_raw" for k in keys} | COMMON_KEYS <= metrics.keys()
    assert metrics["epochs"] == 6
    assert metrics["test_mse"] < metrics["persistence_mse"]
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {"train_loss", "val_mse", "seconds"} <= rows[0].keys()
    shown = _eval(capsys, shared_data, out)
    assert f"{metrics['test_r2']:.4f}" in shown and f"{metrics['test_mse']:.4f}" in shown
    # predict reads the test hours from a CSV: its forecasts score the test MSE in the series'
    # units, and one more forecast lies beyond the file's last row
    hours = np.load(shared_data / "LondonAQ.npz")["GEltham"][6000:8000, 0]
    csv_path = tmp_path / "hours.csv"
    csv_path.write_text("GEltham[0]\n" + "".join(f"{float(v)!r}\n" for v in hours))
    task, model = restore(task_of(out), out, "cpu")
    rows = task.predict(model, [str(csv_path)])
    assert len(rows) == 2000 - 6 + 1 and rows[-1]["row"] == 2001
    forecast = np.array([r["forecast"] for r in rows[:-1]])
    assert np.mean((forecast - hours[6:]) ** 2) == pytest.approx(metrics["test_mse_raw"], rel=1e-4)
    code, stdout, err = rnnlab(capsys, "predict", str(out), str(csv_path))
    assert code == 0, err
    assert "forecast" in stdout and "2001" in stdout


def test_air_quality_asinh_view_is_read_again_by_predict(capsys, shared_data, tmp_path):
    # data.asinh_scale doubles the model's inputs; predict must rebuild them from raw readings
    out, metrics = _run(
        capsys, shared_data, tmp_path, "air-quality",
        "data.train_rows=3000", "data.test_rows=500", "data.neighbours=['GWoolwich']",
        "data.asinh_scale=10.0", "train.epochs=2", "model.hidden=8",
    )  # fmt: skip
    meta = json.loads((out / "model.json").read_text())
    assert meta["features"] == 4 and meta["columns"] == ["GEltham[0]", "GWoolwich[0]"]
    assert len(meta["scaler"]["mean"]) == 4
    with np.load(shared_data / "LondonAQ.npz") as npz:
        hours = np.stack([npz[s][3000:3500, 0] for s in ("GEltham", "GWoolwich")], axis=1)
    csv_path = tmp_path / "hours.csv"
    csv_path.write_text("".join(f"{a!r},{b!r}\n" for a, b in hours.astype(float).tolist()))
    task, model = restore(task_of(out), out, "cpu")
    forecast = np.array([r["forecast"] for r in task.predict(model, [str(csv_path)])[:-1]])
    mse = np.mean((forecast - hours[6:, 0]) ** 2)
    assert mse == pytest.approx(metrics["test_mse_raw"], rel=1e-4)


def test_electric_devices_writes_report_and_beats_majority(capsys, shared_data, tmp_path):
    train, test = ucr_slice(shared_data, tmp_path, 900)
    out, metrics = _run(
        capsys, shared_data, tmp_path, "electric-devices",
        f"data.train='{train}'", f"data.test='{test}'", "model.hidden=32", "model.layers=1",
        "train.epochs=8", "train.batch_size=32", "train.optimizer='adam'", "train.lr=0.01",
    )  # fmt: skip
    assert {"confusion.png", "report.json"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    assert len(report["confusion_matrix"]) == 7 and len(report["per_class"]) == 7
    assert {"test_accuracy", "test_macro_f1"} | COMMON_KEYS <= metrics.keys()
    assert metrics["test_accuracy"] > metrics["majority_accuracy"] + 0.05
    assert f"{metrics['test_accuracy']:.4f}" in _eval(capsys, shared_data, out)
    # predict reads a file in the training format: classifying the test file anew scores the
    # test accuracy to the last digit, and the CLI shows one row per day
    task, model = restore(task_of(out), out, "cpu")
    rows = task.predict(model, [test])
    right = sum(str(r["given"]) == r["label"] for r in rows)
    assert right / len(rows) == pytest.approx(metrics["test_accuracy"], abs=1e-12)
    assert all(sum(r[c] for c in report["classes"]) == pytest.approx(1, abs=1e-5) for r in rows)
    code, stdout, err = rnnlab(capsys, "predict", str(out), test)
    assert code == 0, err
    assert "given" in stdout and stdout.count("\n") >= len(rows)
    # --csv writes the same answers at full precision instead of the table
    code, stdout, err = rnnlab(capsys, "predict", str(out), test, "--csv", str(tmp_path / "a.csv"))
    assert code == 0 and f"{len(rows)} answers written to" in stdout, err
    with open(tmp_path / "a.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["label"] for r in written] == [r["label"] for r in rows]
    assert [float(r["1"]) for r in written] == [r["1"] for r in rows]


def test_electric_devices_sorted_levels_are_read_again_by_predict(capsys, shared_data, tmp_path):
    # data.sorted_levels adds a third input; predict must build it again from a file's raw days
    train, test = ucr_slice(shared_data, tmp_path, 200)
    out, metrics = _run(
        capsys, shared_data, tmp_path, "electric-devices",
        f"data.train='{train}'", f"data.test='{test}'", "data.znorm=true",
        "data.differences=true", "data.sorted_levels=true", "model.hidden=8", "model.layers=1",
        "train.epochs=2", "train.batch_size=32",
    )  # fmt: skip
    assert json.loads((out / "model.json").read_text())["features"] == 3
    task, model = restore(task_of(out), out, "cpu")
    rows = task.predict(model, [test])
    right = sum(str(r["given"]) == r["label"] for r in rows)
    assert right / len(rows) == pytest.approx(metrics["test_accuracy"], abs=1e-12)


def test_label_smoothing_is_the_classifiers_training_loss(shared_data, tmp_path):
    import torch
    import torch.nn.functional as F

    from rnnlab.tasks import ElectricDevices

    train, test = ucr_slice(shared_data, tmp_path, 200)
    sets = [f"data.train='{train}'", f"data.test='{test}'", "model.hidden=8", "model.layers=1"]
    torch.manual_seed(0)
    for smoothing in (0.0, 0.3):
        task = ElectricDevices(
            ElectricDevices.config(None, [*sets, f"train.label_smoothing={smoothing}"])
        )
        task.load()
        model = task.build_model()
        batch = {k: v[:16] for k, v in task.splits["train"].items()}
        logits = model(batch["x"]).float()
        target = F.one_hot(batch["y"], 7) * (1 - smoothing) + smoothing / 7
        loss, _ = task.loss(model, batch, None)
        torch.testing.assert_close(loss, -(target * logits.log_softmax(-1)).sum(-1).mean())
        if smoothing:  # uniform mass on the wrong classes costs more than the plain loss
            assert loss > F.cross_entropy(logits, batch["y"])


def test_a_bad_label_smoothing_names_its_key(capsys, shared_data, tmp_path):
    train, test = ucr_slice(shared_data, tmp_path, 200)
    code, _, err = rnnlab(
        capsys, "run", "electric-devices", "--out", str(tmp_path / "r"),
        "--set", f"data.train='{train}'", "--set", f"data.test='{test}'",
        "--set", "train.label_smoothing=1.5",
    )  # fmt: skip
    assert_one_line_error(code, err, "train.label_smoothing", "[0, 1]")


def test_sentiment_predicts_labels_for_new_text(capsys, shared_data, tmp_path):
    out, metrics = _run(
        capsys, shared_data, tmp_path, "sentiment",
        "train.epochs=3", "train.optimizer='adam'", "train.lr=0.005", "model.hidden=32",
    )  # fmt: skip
    assert metrics["test_accuracy"] > metrics["majority_accuracy"]
    assert f"{metrics['test_accuracy']:.4f}" in _eval(capsys, shared_data, out)
    code, stdout, stderr = rnnlab(
        capsys, "predict", str(out), "the flight was great, thank you", "lost my bag again"
    )
    assert code == 0, stderr
    assert stdout.count("negative") + stdout.count("positive") + stdout.count("neutral") >= 2
    # texts of unequal lengths answered in one padded batch, as each alone
    texts = ["the flight was great, thank you", "lost my bag again", "delayed"]
    task, model = restore(task_of(out), out, "cpu")
    together = task.predict(model, texts)
    for text, row in zip(texts, together, strict=True):
        alone = task.predict(model, [text])[0]
        assert alone["label"] == row["label"] and alone["text"] == text
        assert [alone[c] for c in task.meta["classes"]] == pytest.approx(
            [row[c] for c in task.meta["classes"]], abs=1e-6
        )
    model_json = json.loads((out / "model.json").read_text())
    assert model_json["task"] == "sentiment" and model_json["classes"] == [
        "negative",
        "neutral",
        "positive",
    ]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--set", "train.epochz=3"], ["train.epochz", "train.epochs"]),
        (["--set", "train.epochs=-1"], ["train.epochs", ">= 1"]),
        (["--set", "data.lag=0"], ["data.lag", ">= 1"]),
        (["--set", "data.train_rows=0"], ["data.train_rows", ">= 1"]),
        (["--set", "model.head_dropout=1.0"], ["model.head_dropout", "[0, 1)"]),
        (["--set", "model.pool='median'"], ["model.pool", "'mean'"]),
        (["--set", "model.cell='transformer'"], ["model.cell", "'lstm'"]),
        (["--set", "train.lr='fast'"], ["train.lr", "number"]),
        (["--set", "train.lr=0.0"], ["train.lr", "> 0"]),
        (["--set", "train.clip_norm=-1.0"], ["train.clip_norm", "> 0"]),
        (["--set", "data.path='/no/such/file.csv'"], ["/no/such/file.csv"]),
        (["--config", "/no/such/config.toml"], ["/no/such/config.toml"]),
        (["--set", "epochs=3"], ["epochs=3", "SECTION.KEY=VALUE"]),
    ],
)
def test_bad_configs_give_one_line_errors(capsys, tmp_path, args, names):
    code, _, err = rnnlab(capsys, "run", "air-quality", "--out", str(tmp_path / "r"), *args)
    assert_one_line_error(code, err, *names)
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_unknown_task_suggests_the_closest(capsys):
    code, _, err = rnnlab(capsys, "run", "air-qualty")
    assert_one_line_error(code, err, "air-qualty", "air-quality")


def test_eval_of_a_directory_that_is_not_a_run(capsys, tmp_path):
    code, _, err = rnnlab(capsys, "eval", str(tmp_path))
    assert_one_line_error(code, err, "model.json")


def test_every_packaged_config_loads_for_its_task():
    from rnnlab.config import CONFIG_DIR
    from rnnlab.tasks import TASKS

    files = sorted(CONFIG_DIR.glob("*.toml"))
    assert {p.stem for p in files} >= set(TASKS)
    yours = {  # the tasks for a user's own data need its file
        "series-classification": ["data.train='x.csv'"],
        "series-forecast": ["data.path='x.csv'"],
        "text-classification": ["data.path='x.csv'"],
    }
    for path in files:  # TASK.toml, TASK-best.toml, TASK-distilled.toml...
        task = next(t for t in TASKS if path.stem == t or path.stem.startswith(f"{t}-"))
        assert TASKS[task].config(path, yours.get(task, [])).task == task


def test_a_run_on_a_relative_data_path_evaluates_from_anywhere(capsys, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "series.csv", "w", newline="") as f:
        csv.writer(f).writerows([["load"], *([f"{(i * 37) % 11 / 10}"] for i in range(400))])
    monkeypatch.chdir(data)
    sets = ["data.path='series.csv'", "data.columns=['load']", "train.epochs=1", "model.hidden=4"]
    args = [arg for s in sets for arg in ("--set", s)]
    code, _, err = rnnlab(capsys, "run", "air-quality", "--quiet", "--out", "run", *args)
    assert code == 0, err
    monkeypatch.chdir(tmp_path)  # elsewhere: the run's config.toml must still find its data
    code, _, err = rnnlab(capsys, "eval", str(data / "run"))
    assert code == 0, err


def test_the_run_header_names_device_precision_and_folder_on_one_line(capsys, tmp_path):
    path = tmp_path / "series.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["load"], *([f"{(i * 37) % 11 / 10}"] for i in range(400))])
    out = tmp_path / ("a-long-folder-name-" * 4) / "run"  # past 80 columns: a log must keep it
    sets = [f"data.path='{path}'", "data.columns=['load']", "train.epochs=1", "model.hidden=4"]
    args = [arg for s in sets for arg in ("--set", s)]
    code, _, err = rnnlab(capsys, "run", "air-quality", "--device", "cpu", "--out", str(out), *args)
    assert code == 0, err
    header = next(line for line in err.splitlines() if "parameters on" in line)
    assert re.search(r"parameters on cpu \(\d+ threads?[^,]*\), fp32, ", header), header
    assert header.endswith(str(out))


def test_sentiment_says_which_texts_it_left_out(capsys, tmp_path):
    """A text with no letters, or only unknown words, cannot be read: the run says so."""
    rows = [["twsentiment", "text"]]
    rows += [["positive", "great flight thanks"], ["negative", "delayed again awful"]] * 30
    rows += [["neutral", "which gate tomorrow"]] * 30
    rows += [["negative", "@united 123 !!!"], ["neutral", "qqq"], ["positive", "zzz"]]
    path = tmp_path / "tweets.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "run"
    code, _, err = rnnlab(
        capsys, "run", "sentiment", "--device", "cpu", "--out", str(out),
        "--set", f"data.path='{path}'", "--set", "data.num_words=9", "--set", "train.epochs=1",
    )  # fmt: skip
    assert code == 0, err
    said = " ".join(err.split())
    assert "left out 3 texts with no word to read: 1 with no letters, 2 with only words" in said


def test_air_quality_reads_a_users_csv(capsys, tmp_path, monkeypatch):
    """`data.path` and `data.columns` by name: the user's own series, its plot named for the file."""
    import math

    from rnnlab import plots

    rows = [["time", "load", "temp"]]
    rows += [[f"t{i}", f"{math.sin(i / 5):.4f}", f"{math.cos(i / 50):.4f}"] for i in range(1200)]
    path = tmp_path / "load.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    titles = []
    drawn = plots.predictions
    monkeypatch.setattr(
        plots,
        "predictions",
        lambda *a, **k: titles.append((k["title"], k["xlabel"])) or drawn(*a, **k),
    )
    out, metrics = _run(
        capsys, tmp_path, tmp_path, "air-quality",
        f"data.path='{path}'", "data.columns=['load', 'temp']", "train.epochs=3",
        "train.batch_size=32", "train.lr=0.01", "model.hidden=16",
    )  # fmt: skip
    assert 800 < metrics["train_examples"] < 960 and "test_r2" in metrics
    assert metrics["test_mse"] < metrics["persistence_mse"]
    assert titles == [("load.csv: first 234 test steps", "test step (rows of the file)")]
    assert (out / "predictions.png").is_file()
