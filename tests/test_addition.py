"""`rnnlab run addition` and `rnnlab run seq2seq` end to end on tiny settings; `rnnlab predict`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, rnnlab
from rich.console import Console
from torch import Tensor

from rnnlab.data.addition import decode
from rnnlab.errors import RnnlabError
from rnnlab.runs.pipeline import run
from rnnlab.tasks import Addition
from rnnlab.tasks.tsv_pairs import Pairs, read_pairs

DATES = Path(__file__).resolve().parents[1] / "examples" / "dates.tsv"
TINY = ["data.examples=600", "data.digits=2", "data.test_examples=100", "model.hidden=32",
        "train.epochs=2", "train.threads=1"]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def keep_threads():
    """The runs set one thread (train.threads=1); later tests get the count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("addition") / "run"
    return run(Addition, Addition.config(None, TINY), out, "cpu", quiet=True)


def _args(*sets: str) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


def test_run_addition_writes_the_run_dir_and_predict_answers(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = rnnlab(capsys, "run", "addition", "--quiet", "--out", str(out), *_args(*TINY))
    assert code == 0, err
    assert {"config.toml", "history.csv", "metrics.json", "model.safetensors",
            "learning_curves.png"} <= {p.name for p in out.iterdir()}  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_exact_match", "test_char_accuracy", "test_loss", "train_seconds"} <= set(metrics)
    with open(out / "history.csv") as f:
        row = next(csv.DictReader(f))
    assert {"val_loss", "val_exact_match", "val_char_accuracy"} <= set(row)
    code, stdout, err = rnnlab(capsys, "predict", str(out), "12+34", "9+9")
    assert code == 0, err
    assert "12+34" in stdout and "9+9" in stdout and "probability" in stdout


@pytest.mark.parametrize("question", ["12++3", "1a+2", "123+4", "", "12-3"])
def test_bad_questions_give_one_line_errors(capsys, addition_run, question):
    code, _, err = rnnlab(capsys, "predict", str(addition_run), question)
    assert_one_line_error(code, err, repr(question), "1 to 2 digits")


def test_test_questions_were_never_seen_in_training():
    task = Addition(Addition.config(None, ["data.examples=3000", "data.test_examples=2000"]))
    task.load()
    seen = {q for split in ("train", "val") for q in decode(task.splits[split]["x"])}
    fresh = decode(task.splits["test"]["x"])
    assert len(set(fresh)) == 2000 and not seen & set(fresh)
    assert len(task.splits["train"]["x"]) == 2700 and len(task.splits["val"]["x"]) == 300


def test_every_epoch_shows_validation_questions_the_lab_way(tmp_path):
    console = Console(file=io.StringIO(), width=100)
    run(Addition, Addition.config(None, TINY), tmp_path / "r", "cpu", console=console)
    shown = console.file.getvalue()
    lines = [line for line in shown.splitlines() if line.startswith("Q ")]
    assert len(lines) == 2 * Addition.samples
    assert all(" T " in line and ("✓" in line or "✗" in line) for line in lines)


def test_attention_with_teacher_forcing_and_beam_search_runs(capsys, tmp_path):
    out = tmp_path / "run"
    sets = [*TINY, "model.decoder='attention'", "model.attention='dot'",
            "train.teacher_forcing=0.5", "model.beam_size=3", "model.alpha=0.6"]  # fmt: skip
    code, _, err = rnnlab(capsys, "run", "addition", "--quiet", "--out", str(out), *_args(*sets))
    assert code == 0, err
    assert (out / "attention.png").is_file()
    code, stdout, err = rnnlab(capsys, "predict", str(out), "5+7")
    assert code == 0, err
    assert "5+7" in stdout


def test_run_seq2seq_on_the_example_dates(capsys, tmp_path):
    out = tmp_path / "run"
    sets = [f"data.path='{DATES}'", "train.epochs=1", "model.hidden=24", "train.threads=1"]
    code, _, err = rnnlab(capsys, "run", "seq2seq", "--quiet", "--out", str(out), *_args(*sets))
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_exact_match", "test_token_accuracy", "test_loss"} <= set(metrics)
    assert metrics["test_token_accuracy"] > 0.3  # well above chance after one epoch
    assert (out / "attention.png").is_file()
    code, stdout, err = rnnlab(capsys, "predict", str(out), "march 5, 1987")
    assert code == 0, err
    assert "march 5, 1987" in stdout


@pytest.mark.parametrize(
    ("task", "sets", "names"),
    [
        ("addition", ["train.teacher_forcing=1.5"], ["train.teacher_forcing", "[0, 1]"]),
        ("addition", ["model.decoder='transformer'"], ["model.decoder", "'plain'"]),
        ("addition", ["model.beam_size=0"], ["model.beam_size"]),
        ("addition", ["data.digits=0"], ["data.digits"]),
        ("addition", ["data.digits=2", "data.examples=5000"], ["data.examples", "5,050"]),
        ("seq2seq", ["data.path='/no/such/pairs.tsv'"], ["/no/such/pairs.tsv"]),
    ],
)
def test_bad_settings_give_one_line_errors(capsys, tmp_path, task, sets, names):
    code, _, err = rnnlab(capsys, "run", task, "--out", str(tmp_path / "r"), *_args(*sets))
    assert_one_line_error(code, err, *names)


def test_a_malformed_pairs_file_names_the_line(capsys, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("one\t1\ntwo\t2\nthree 3\nfour\t4\n")
    code, _, err = rnnlab(
        capsys, "run", "seq2seq", "--out", str(tmp_path / "r"), "--set", f"data.path='{pairs}'"
    )
    assert_one_line_error(code, err, f"{pairs}:3")


def test_a_pairs_header_is_read_only_when_asked(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("\nsource\ttarget\none\t1\ntwo\t2\nthree 3\n")
    with pytest.raises(RnnlabError, match=f"{pairs}:5"):  # numbers count the skipped lines
        read_pairs(pairs, header=True)
    pairs.write_text("\nsource\ttarget\none\t1\ntwo\t2\nthree\t3\n")
    assert read_pairs(pairs, header=True) == [("one", "1"), ("two", "2"), ("three", "3")]
    assert read_pairs(pairs)[0] == ("source", "target")  # without header=True it is a pair


def test_pairs_split_does_not_follow_the_training_seed(tmp_path):
    def test_sources(*sets: str) -> Tensor:
        task = Pairs(Pairs.config(None, [f"data.path='{DATES}'", *sets]))
        task.load()
        return task.splits["test"]["x"]

    same, other_seed, other_split = (
        test_sources(), test_sources("train.seed=1"), test_sources("data.split_seed=1")
    )  # fmt: skip
    assert torch.equal(same, other_seed)
    assert not torch.equal(same, other_split)


def test_validation_examples_show_brackets_as_text_and_an_empty_answer_as_nothing(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"[red]{i}\t[b]{i % 7}\n" for i in range(40)))
    console = Console(file=io.StringIO(), width=100)
    sets = [f"data.path='{pairs}'", "train.epochs=1", "model.hidden=8", "train.threads=1"]
    run(Pairs, Pairs.config(None, sets), tmp_path / "r", "cpu", console=console)
    lines = [line for line in console.file.getvalue().splitlines() if line.startswith("Q ")]
    assert lines and all("[red]" in line and "[b]" in line for line in lines)
    assert all(line.rstrip().endswith(("(nothing)", "]", *"0123456")) for line in lines)


def test_predict_shows_an_empty_answer_as_nothing_and_floats_to_three_digits():
    from rnnlab.cli.commands import _cell

    assert [_cell(v).plain for v in ("", "596", 0.98765, 3)] == ["(nothing)", "596", "0.988", "3"]


def test_validation_of_the_plain_decoder_scores_as_decoding_again(monkeypatch):
    task = Addition(Addition.config(None, TINY))
    task.load()
    torch.manual_seed(0)
    model = task.build_model().eval()
    batch = {k: t[:64] for k, t in task.splits["val"].items()}
    assert task._decoded_by_forward(model, batch["y"])  # the shortcut is taken here
    with torch.inference_mode():
        shortcut = task._scores(model, batch)
        monkeypatch.setattr(Addition, "_decoded_by_forward", lambda *args: False)
        decoded = task._scores(model, batch)
    assert torch.equal(shortcut, decoded)
    assert 0 < shortcut[:, 2].sum() < shortcut[:, 1].sum()  # some tokens right, not all
