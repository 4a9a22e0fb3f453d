"""rnnlab from Python: train, load, predict, generate, compare, the same runs as the command line."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import raises_one_line

import rnnlab
from rnnlab.api import settings

AIR = {"data__train_rows": 600, "data__test_rows": 200, "model__hidden": 8, "train__epochs": 2}


@pytest.fixture
def air_run(shared_data, tmp_path):
    return rnnlab.train(
        "air-quality", out=tmp_path / "air", quiet=True, data_dir=shared_data, **AIR
    )


def test_a_run_trained_from_python_is_the_run_the_command_line_writes(air_run):
    assert (air_run.path / "metrics.json").is_file() and (
        air_run.path / "model.safetensors"
    ).is_file()
    assert air_run.task == "air-quality"
    assert air_run.config.model.hidden == 8 and air_run.config.train.epochs == 2
    assert set(air_run.metrics) >= {"test_mse", "persistence_mse", "learned"}
    history = air_run.history
    rows = history.reset_index().to_dict("records") if hasattr(history, "reset_index") else history
    assert [row["epoch"] for row in rows] == [1, 2] and "val_mse" in rows[0]
    assert {p.name for p in air_run.plots} >= {"learning_curves.png", "predictions.png"}
    assert air_run.plot() == air_run.plots  # outside a notebook: nothing shown, the files returned


def test_a_loaded_run_predicts_arrays_and_files_alike(air_run, shared_data, tmp_path):
    run = rnnlab.load(air_run.path, device="cpu")
    readings = np.linspace(20.0, 40.0, 10)
    from_array = run.predict(readings)
    csv = tmp_path / "readings.csv"
    csv.write_text("value\n" + "\n".join(map(str, readings)) + "\n")
    assert run.predict([csv]) == from_array
    assert [r["row"] for r in from_array] == list(range(7, 12))  # lag 6: 5 windows, ahead 1
    with raises_one_line("an array of shape (2, 3, 4)", "expected (rows, columns)"):
        run.predict(np.zeros((2, 3, 4)))
    again = run.evaluate(data_dir=shared_data)
    assert again == pytest.approx({k: air_run.metrics[k] for k in again})


def test_settings_are_section_double_underscore_key():
    assert settings({"model__hidden": 64, "train__patience": None}) == [
        ("model", "hidden", 64),
        ("train", "patience", None),
    ]
    with raises_one_line("hidden=64", "SECTION__KEY"):
        settings({"hidden": 64})
    with raises_one_line("optim__lr", "SECTION__KEY"):
        settings({"optim__lr": 1.0})


def test_an_unknown_or_mistyped_setting_is_the_command_lines_error():
    with raises_one_line("model.hiden", "did you mean model.hidden?"):
        rnnlab.configure("addition", model__hiden=8)
    with raises_one_line("train.epochs", "must be"):
        rnnlab.configure("addition", train__epochs="many")
    assert rnnlab.configure("addition", train__patience=None).train.patience is None


def test_a_load_of_a_folder_that_is_not_there_names_it(tmp_path):
    with raises_one_line(str(tmp_path / "nope"), "no such run directory"):
        rnnlab.load(tmp_path / "nope")


def test_a_finished_run_resumes_as_it_is(air_run):
    assert rnnlab.resume(air_run.path).metrics == air_run.metrics


def test_a_text_model_generates_and_refuses_arrays(shared_data, tmp_path):
    run = rnnlab.train(
        "text-generation", out=tmp_path / "text", quiet=True, data_dir=shared_data,
        data__mode="stream", model__hidden=8, train__bptt=16, train__epochs=1,
        train__sample_length=10,
    )  # fmt: skip
    text = run.generate(prime="the ", length=30, temperature=0.0)
    assert text.startswith("the ") and 4 < len(text) <= 34
    with raises_one_line("text-generation", "not arrays"):
        run.predict(np.zeros((2, 3)))


def test_a_study_from_python_summarises_every_cell(shared_data, tmp_path):
    study = rnnlab.compare(
        "air-quality", cells=["rnn", "gru"], seeds=1, out=tmp_path / "study", quiet=True,
        data_dir=shared_data, **AIR,
    )  # fmt: skip
    assert study.cells == ["rnn", "gru"] and len(study.runs) == 2
    assert set(study.summary["test_mse"]) == {"rnn", "gru"}
    assert "--set train.epochs=2" in (study.path / "compare.md").read_text()
    assert study.plot() == [study.path / "curves.png"] and (study.path / "curves.png").is_file()
