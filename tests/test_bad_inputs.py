"""Every bad input gets one line on stderr naming the culprit: never a traceback, never a zero exit
status, never a half-written file. The inputs tried, by where they come in:

CLI
  1. an unknown task name (the closest is suggested)
  2. an unknown option
  3. a missing argument
  4. an unknown device (--device tpu)
  5. --device cuda on a machine without CUDA
Configs
  6. a --config file that does not exist
  7. a --config file that is not valid TOML
  8. a config section that does not exist
  9. a config file written for another task
 10. a --set without SECTION.KEY=VALUE
 11. an unknown key (the closest is suggested)
 12. a value of the wrong type
 13. negative epochs
 14. an unknown cell
 15. the lecture GRU forced onto the fused engine
 16. data.val_fraction outside (0, 1)
 37. a number that is not finite (train.lr=nan)
 38. an integer too large for the libraries (train.seed=2**32)
 39. more digits than an int64 sum holds (data.digits=19)
 40. a dataset that is not a text for text generation
 50. data.asinh_scale that is not above 0
 51. more threads than the machine has CPUs
 52. a --config that is not a regular file (/dev/zero)
 53. a model too large for the memory free (model.hidden, model.layers)
Data files
 17. a CSV path that does not exist
 18. a CSV row with the wrong number of fields
 19. a UCR file with a non-numeric value
 20. a UCR file whose labels are not integers
 21. an empty text file
 22. a truncated gzip text file
 23. a tweets CSV without the text column
 24. an unknown site in the air-quality archive
 25. a data file whose SHA-256 digest is wrong
 41. NaN in a CSV series
 42. NaN in a UCR file (as UCR pads unequal lengths)
 43. so little data that a split is empty
 44. a seq2seq pair longer than data.max_tokens
 54. a reading beyond float32's range
 55. labels of one class only (tweets, UCR)
 56. labels that differ only in case
 57. a label only in the held-out texts (ordered split)
Prompts
 26. a generation prime with characters the model never saw
 27. sentiment text with no known word
 28. input for a task that takes none (text generation)
 47. series of another length than the model learned from (electric-devices predict)
 48. readings in another number of columns than the model reads (air-quality predict)
 49. fewer readings than one window of data.lag rows (air-quality predict)
Checkpoints
 29. eval of a directory that is not a run
 30. model.json that is not JSON
 31. a truncated model.safetensors
 32. model.json from a newer format version
 33. a model.json claiming another task (weights of another architecture)
 34. --resume of a run without a checkpoint
 35. --resume with --set overrides
 58. --resume of a regular file
Files the system refuses
 36. an --out directory under a regular file
 45. an --out directory that already holds files
 46. --json naming a directory
Also: Ctrl-C outside the training loop; a model.json without an entry the task needs.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, rnnlab


def _leftovers(*roots: Path) -> list[Path]:
    """Temporary files and half-swapped directories that an atomic write would leave behind."""
    found = []
    for root in roots:
        if root.exists():
            found += [p for p in root.rglob("*") if p.name.endswith((".tmp", ".new", ".part"))]
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data):
    """Tiny trained runs to corrupt: air quality, ElectricDevices, sentiment, text generation."""
    base = tmp_path_factory.mktemp("runs")
    specs = {
        "air-quality": ["data.train_rows=2000", "data.test_rows=300", "model.hidden=4"],
        "electric-devices": ["model.hidden=4", "model.layers=1"],
        "sentiment": ["model.hidden=4", "model.embedding=4", "data.num_words=300"],
        "text-generation": ["data.mode='stream'", "model.hidden=8", "train.bptt=16"],
    }
    from rnnlab import tasks
    from rnnlab.runs import pipeline

    made = {}
    for task, sets in specs.items():
        cls = tasks.get_task(task)
        cfg = cls.config(None, [*sets, "train.epochs=1"])
        made[task] = pipeline.run(cls, cfg, base / task, "cpu", True, shared_data)
    return made


def _copy_run(runs: dict, task: str, tmp_path: Path) -> Path:
    target = tmp_path / f"{task}-copy"
    shutil.copytree(runs[task], target)
    return target


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


AQ = ["run", "air-quality", "--device", "cpu", "--quiet"]


def _cases(tmp_path: Path, shared_data: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (argv, words the one error line must contain)."""
    bad_toml = _file(tmp_path, "bad.toml", "[train\nepochs = 3\n")
    other = _file(tmp_path, "other.toml", 'task = "sentiment"\n[train]\nepochs = 1\n')
    section = _file(tmp_path, "section.toml", "[optimizer]\nlr = 1\n")
    ragged = _file(tmp_path, "ragged.csv", "a,b\n1,2\n3\n4,5\n")
    letters = _file(tmp_path, "X_TRAIN.tsv", "1\t0.5\t0.7\n2\t0.1\tabc\n")
    letters_test = _file(tmp_path, "X_TEST.tsv", "1\t0.5\t0.7\n2\t0.1\t0.2\n")
    labels = _file(tmp_path, "Y_TRAIN.tsv", "1.5\t0.5\t0.7\n2\t0.1\t0.3\n")
    empty = _file(tmp_path, "empty.txt", "")
    truncated = tmp_path / "cut.txt.gz"
    whole = gzip.compress(" ".join(str(i * 7919 % 10007) for i in range(5000)).encode())
    truncated.write_bytes(whole[: len(whole) // 2])
    no_text = _file(tmp_path, "tweets.csv", "label,body\npositive,great flight\n")
    wrong = tmp_path / "wrongdigest"
    wrong.mkdir()
    (wrong / "LondonAQ.npz").write_bytes(b"not the real file")
    blocker = _file(tmp_path, "blocker.txt", "a file where a directory should be\n")
    series = "\n".join(f"{i % 7}.5" for i in range(300))
    nan_csv = _file(tmp_path, "nan.csv", f"load\n{series}\nnan\n{series}\n")
    nan_ucr = _file(tmp_path, "N_TRAIN.tsv", "1\t0.5\t0.7\n2\t0.1\tNaN\n")
    one_ucr = _file(tmp_path, "O_TRAIN.tsv", "1\t0.5\t0.7\n2\t0.1\t0.3\n")
    one_test = _file(tmp_path, "O_TEST.tsv", "1\t0.5\t0.7\n")
    pairs = "".join(f"{i}\t{i + 1}\n" for i in range(20)) + "x" * 300 + "\ty\n"
    long_pair = _file(tmp_path, "long.tsv", pairs)

    def test_of(path: str) -> list[str]:
        return ["--set", f"data.test='{path}'"]

    huge = _file(tmp_path, "huge.csv", f"load\n{series}\n1e300\n{series}\n")
    tweets = "".join(f"{label},flight number {i} was fine\n" for i, label in enumerate(["no"] * 40))
    one_label = _file(tmp_path, "one.csv", "label,text\n" + tweets)
    cased = _file(tmp_path, "cased.csv", "label,text\n" + tweets + "No,a bad one\nyes,good\n")
    late = _file(tmp_path, "late.csv", "label,text\n" + tweets * 2 + "yes,at the very end\n")
    tweet_sets = ["--set", "data.label_column='label'"]
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("someone's files\n")
    return {
        "unknown task": (["run", "air-qualty"], ["air-qualty", "air-quality"]),
        "unknown option": ([*AQ, "--epochs", "3"], ["--epochs"]),
        "missing argument": (["eval"], ["run_dir"]),
        "unknown device": ([*AQ, "--device", "tpu"], ["--device", "tpu"]),
        "cuda without gpu": ([*AQ, "--device", "cuda"], ["cuda"]),
        "missing config": ([*AQ, "--config", "/nope/c.toml"], ["/nope/c.toml"]),
        "invalid toml": ([*AQ, "--config", bad_toml], [bad_toml, "TOML"]),
        "unknown section": ([*AQ, "--config", section], ["optimizer"]),
        "config of another task": ([*AQ, "--config", other], ["sentiment"]),
        "malformed --set": ([*AQ, "--set", "epochs"], ["SECTION.KEY=VALUE"]),
        "unknown key": ([*AQ, "--set", "model.hiden=4"], ["model.hiden", "model.hidden"]),
        "wrong type": ([*AQ, "--set", "train.batch_size=1.5"], ["train.batch_size"]),
        "negative epochs": ([*AQ, "--set", "train.epochs=-2"], ["train.epochs"]),
        "unknown cell": ([*AQ, "--set", "model.cell='mlp'"], ["model.cell"]),
        "lecture gru on fused": (
            [
                *AQ,
                "--set",
                "model.cell='gru'",
                "--set",
                "model.gru_variant='lecture'",
                "--set",
                "model.engine='fused'",
            ],
            ["model.engine"],
        ),
        "val fraction": ([*AQ, "--set", "data.val_fraction=1.5"], ["data.val_fraction"]),
        "asinh scale": ([*AQ, "--set", "data.asinh_scale=0.0"], ["data.asinh_scale", "> 0"]),
        "missing csv": ([*AQ, "--set", "data.path='/nope/x.csv'"], ["/nope/x.csv"]),
        "ragged csv": (
            [*AQ, "--set", f"data.path='{ragged}'", "--set", "data.lag=1"],
            [ragged, "3"],
        ),
        "non-numeric ucr": (
            [
                "run",
                "electric-devices",
                "--quiet",
                "--set",
                f"data.train='{letters}'",
                "--set",
                f"data.test='{letters_test}'",
            ],
            [letters, "abc"],
        ),
        "non-integer labels": (
            [
                "run",
                "electric-devices",
                "--quiet",
                "--set",
                f"data.train='{labels}'",
                "--set",
                f"data.test='{letters_test}'",
            ],
            [labels, "1.5"],
        ),
        "empty text": (["run", "text-generation", "--set", f"data.path='{empty}'"], [empty]),
        "truncated gzip": (
            ["run", "text-generation", "--set", f"data.path='{truncated}'"],
            [str(truncated)],
        ),
        "no text column": (
            ["run", "sentiment", "--set", f"data.path='{no_text}'"],
            [no_text, "text"],
        ),
        "unknown site": (
            [*AQ, "--data-dir", str(shared_data), "--set", "data.site='Nowhere'"],
            ["Nowhere"],
        ),
        "wrong digest": ([*AQ, "--data-dir", str(wrong)], ["LondonAQ.npz"]),
        "out under a file": (
            [*AQ, "--data-dir", str(shared_data), "--out", f"{blocker}/run"],
            [f"{blocker}/run", "Not a directory"],
        ),
        "nan lr": ([*AQ, "--set", "train.lr=nan"], ["train.lr", "finite"]),
        "huge seed": ([*AQ, "--set", "train.seed=4294967296"], ["train.seed", "4294967296"]),
        "too many digits": (["run", "addition", "--set", "data.digits=19"], ["data.digits", "18"]),
        "not a text": (
            ["run", "text-generation", "--set", "data.dataset='airlines'"],
            ["data.dataset", "airlines", "poetry1"],
        ),
        "nan in csv": ([*AQ, "--set", f"data.path='{nan_csv}'"], [nan_csv, "line 302", "nan"]),
        "nan in ucr": (
            ["run", "electric-devices", "--set", f"data.train='{nan_ucr}'", *test_of(letters_test)],
            [nan_ucr, "row 2, column 3"],
        ),
        "empty split": (
            ["run", "electric-devices", "--set", f"data.train='{one_ucr}'", *test_of(one_test)],
            ["val 0", "empty"],
        ),
        "long pair": (
            ["run", "seq2seq", "--set", f"data.path='{long_pair}'"],
            [long_pair, "300 tokens", "data.max_tokens"],
        ),
        "out not empty": (
            [*AQ, "--data-dir", str(shared_data), "--out", str(full)],
            [str(full), "not empty", "--resume"],
        ),
        "data dir a file": ([*AQ, "--data-dir", blocker], [blocker, "data directory is a file"]),
        "csv a directory": (
            [*AQ, "--set", f"data.path='{full}'"],
            [str(full), "a directory", "expected a CSV"],
        ),
        "too many threads": ([*AQ, "--set", "train.threads=100000"], ["train.threads", "CPUs"]),
        "config not a file": ([*AQ, "--config", "/dev/zero"], ["/dev/zero", "regular file"]),
        "huge hidden": (
            [*AQ, "--data-dir", str(shared_data), "--set", "model.hidden=30000"],
            ["model.hidden=30000", "GB", "free"],
        ),
        "huge layers": (
            [*AQ, "--data-dir", str(shared_data), "--set", "model.layers=2147483647"],
            ["model.layers=2147483647", "GB", "free"],
        ),
        "huge reading": ([*AQ, "--set", f"data.path='{huge}'"], [huge, "line 302", "1e300"]),
        "one label": (
            ["run", "sentiment", "--set", f"data.path='{one_label}'", *tweet_sets],
            [one_label, "'label'", "only 'no'", "two labels"],
        ),
        "one ucr class": (
            [
                "run",
                "electric-devices",
                *test_of(letters_test),
                "--set",
                f"data.train='{one_test}'",
            ],
            [one_test, "label 1", "at least two"],
        ),
        "labels in two cases": (
            ["run", "sentiment", "--set", f"data.path='{cased}'", *tweet_sets],
            [cased, "'No'", "'no'", "case"],
        ),
        "label only held out": (
            [
                "run",
                "sentiment",
                "--set",
                f"data.path='{late}'",
                *tweet_sets,
                "--set",
                "data.split='ordered'",
            ],
            [late, "'yes'", "never in the training split"],
        ),
        "resume a file": (
            ["run", "air-quality", "--resume", blocker],
            [blocker, "a file, not a folder"],
        ),
        "pairs a directory": (
            ["run", "seq2seq", "--set", f"data.path='{full}'"],
            [str(full), "a directory", "source<TAB>target"],
        ),
    }


CASE_NAMES = [
    "unknown task", "unknown option", "missing argument", "unknown device", "cuda without gpu",
    "missing config", "invalid toml", "unknown section", "config of another task",
    "malformed --set", "unknown key", "wrong type", "negative epochs", "unknown cell",
    "lecture gru on fused", "val fraction", "asinh scale", "missing csv", "ragged csv",
    "non-numeric ucr", "non-integer labels", "empty text", "truncated gzip", "no text column",
    "unknown site", "wrong digest", "out under a file", "nan lr", "huge seed", "too many digits",
    "not a text", "nan in csv", "nan in ucr", "empty split", "long pair", "out not empty",
    "data dir a file", "csv a directory", "pairs a directory", "too many threads",
    "config not a file", "huge hidden", "huge layers", "huge reading", "one label",
    "one ucr class", "labels in two cases", "label only held out", "resume a file",
]  # fmt: skip


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_cli_config_and_data_inputs(capsys, tmp_path, shared_data, monkeypatch, name):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    argv, words = _cases(tmp_path, shared_data)[name]
    code, _, err = rnnlab(capsys, *argv)
    assert_one_line_error(code, err, *words)
    assert not _leftovers(tmp_path), _leftovers(tmp_path)
    assert not list((tmp_path / "runs").rglob("model.safetensors"))


def test_prime_with_unknown_characters(capsys, runs):
    code, _, err = rnnlab(capsys, "generate", str(runs["text-generation"]), "--prime", "héllo€")
    assert_one_line_error(code, err, "€")


def test_sentiment_text_with_no_known_word(capsys, runs):
    code, _, err = rnnlab(capsys, "predict", str(runs["sentiment"]), "zzzqqq xxyyzz")
    assert_one_line_error(code, err, "zzzqqq")


def test_input_for_a_task_that_takes_none(capsys, runs):
    code, _, err = rnnlab(capsys, "predict", str(runs["text-generation"]), "hello")
    assert_one_line_error(code, err, "text-generation", "rnnlab generate")


def test_readings_that_do_not_fill_the_models_window(capsys, shared_data, tmp_path):
    from rnnlab import tasks
    from rnnlab.runs import pipeline

    cls = tasks.get_task("air-quality")
    sets = ["data.train_rows=2000", "data.test_rows=300", "model.hidden=4", "train.epochs=1"]
    cfg = cls.config(None, [*sets, "data.neighbours=['GWoolwich']"])
    run = pipeline.run(cls, cfg, tmp_path / "run", "cpu", True, shared_data)
    hours = _file(tmp_path, "hours.csv", "".join(f"{i}.5\n" for i in range(10)))
    code, _, err = rnnlab(capsys, "predict", str(run), hours)
    assert_one_line_error(code, err, hours, "1 columns, expected 2", "GWoolwich[0]")
    short = _file(tmp_path, "short.csv", "".join(f"{i}.5,{i}.25\n" for i in range(5)))
    code, _, err = rnnlab(capsys, "predict", str(run), short)
    assert_one_line_error(code, err, short, "5 rows", "data.lag=6")


def test_series_of_another_length_than_the_model_learned_from(capsys, runs, tmp_path):
    days = _file(tmp_path, "days.tsv", "1\t0.5\t0.7\t0.2\n")
    code, _, err = rnnlab(capsys, "predict", str(runs["electric-devices"]), days)
    assert_one_line_error(code, err, days, "3 readings", "expected 96")


def test_eval_of_a_directory_that_is_not_a_run(capsys, tmp_path):
    code, _, err = rnnlab(capsys, "eval", str(tmp_path))
    assert_one_line_error(code, err, "model.json")


def test_model_json_that_is_not_json(capsys, runs, tmp_path):
    run = _copy_run(runs, "air-quality", tmp_path)
    (run / "model.json").write_text("{not json")
    code, _, err = rnnlab(capsys, "predict", str(run), "x")
    assert_one_line_error(code, err, "model.json", "JSON")


def test_truncated_weights(capsys, runs, tmp_path, shared_data):
    run = _copy_run(runs, "air-quality", tmp_path)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = rnnlab(capsys, "eval", str(run), "--data-dir", str(shared_data))
    assert_one_line_error(code, err, "model.safetensors")


def test_newer_format_version(capsys, runs, tmp_path):
    run = _copy_run(runs, "sentiment", tmp_path)
    meta = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps(meta | {"format_version": 99}))
    code, _, err = rnnlab(capsys, "predict", str(run), "good flight")
    assert_one_line_error(code, err, "format version 99", "upgrade")


def test_checkpoint_of_another_architecture(capsys, runs, tmp_path):
    run = _copy_run(runs, "sentiment", tmp_path)
    shutil.copy(runs["air-quality"] / "model.safetensors", run / "model.safetensors")
    code, _, err = rnnlab(capsys, "predict", str(run), "good flight")
    assert_one_line_error(code, err, "model.safetensors", "architecture")


def test_resume_without_checkpoint(capsys, tmp_path):
    code, _, err = rnnlab(capsys, "run", "air-quality", "--resume", str(tmp_path))
    assert_one_line_error(code, err, "--resume", "checkpoint")


def test_resume_of_a_finished_run(capsys, runs, tmp_path):
    run = _copy_run(runs, "air-quality", tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in run.rglob("*")}
    code, out, err = rnnlab(capsys, "run", "air-quality", "--resume", str(run))
    assert code == 0, err
    err, out = err.replace("\n", ""), out.replace("\n", "")
    assert "finished already" in err and f"rnnlab eval {run}" in err
    assert f"run directory: {run}" in out
    assert {p.name: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing rewritten


def test_resume_with_overrides(capsys, runs):
    run = str(runs["air-quality"])
    code, _, err = rnnlab(capsys, "run", "air-quality", "--resume", run, "--set", "train.lr=1")
    assert_one_line_error(code, err, "--resume", "--set")


def test_json_output_naming_a_directory(capsys, runs, tmp_path, shared_data):
    args = ["eval", str(runs["air-quality"]), "--data-dir", str(shared_data)]
    code, _, err = rnnlab(capsys, *args, "--json", str(tmp_path))
    assert_one_line_error(code, err, f"{tmp_path}: Is a directory")
    assert not _leftovers(tmp_path)


def test_model_json_without_an_entry_the_task_needs(capsys, runs, tmp_path):
    run = _copy_run(runs, "sentiment", tmp_path)
    meta = json.loads((run / "model.json").read_text())
    del meta["vocab"]
    (run / "model.json").write_text(json.dumps(meta))
    code, _, err = rnnlab(capsys, "predict", str(run), "good flight")
    assert_one_line_error(code, err, "model.json", "'vocab'")


def test_ctrl_c_outside_the_training_loop(capsys, tmp_path, shared_data, monkeypatch):
    from rnnlab.tasks.air_quality import AirQuality

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(AirQuality, "load", interrupted)
    args = [*AQ, "--data-dir", str(shared_data), "--out", str(tmp_path / "r")]
    code, _, err = rnnlab(capsys, *args)
    assert code == 130
    assert err.strip() == "error: interrupted"


def test_brackets_in_texts_and_paths_are_printed_as_they_are(capsys, runs, tmp_path, monkeypatch):
    # rich reads "[bold]" as a style and "[/x]" as a bad closing tag (a traceback).
    monkeypatch.setenv("COLUMNS", "500")  # no path folded across lines
    run = tmp_path / "[red]run"
    shutil.copytree(runs["sentiment"], run)
    text = "[bold]great[/] flight [/x]"
    code, out, err = rnnlab(capsys, "predict", str(run), text)
    assert code == 0, err
    assert text in out
    code, out, err = rnnlab(capsys, "run", "sentiment", "--resume", str(run))
    assert code == 0, err
    assert str(run) in out.replace("\n", "")
    code, out, err = rnnlab(capsys, "data", "list", "--data-dir", str(run))
    assert code == 0, err
    assert "[red]run" in out
