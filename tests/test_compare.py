"""`rnnlab compare`: every cell, a few seeds each, one row per run, mean ± std per cell."""

from __future__ import annotations

import csv

import pytest
from cli_helpers import assert_one_line_error, rnnlab

from rnnlab import plots
from rnnlab.runs.compare import mean_std

TINY = ["data.train_rows=600", "data.test_rows=200", "model.hidden=8", "train.epochs=1"]


def _sets(*sets: str) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


def test_compare_writes_one_row_per_run_and_a_summary_per_cell(capsys, shared_data, tmp_path):
    out = tmp_path / "study"
    code, stdout, err = rnnlab(
        capsys, "compare", "air-quality", "--cells", "rnn,lstm,gru", "--seeds", "2",
        "--device", "cpu", "--data-dir", str(shared_data), "--out", str(out), *_sets(*TINY),
    )  # fmt: skip
    assert code == 0, err
    assert {"compare.csv", "compare.md", "curves.png"} <= {p.name for p in out.iterdir()}
    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["cell"], r["seed"]) for r in rows] == [
        (cell, seed) for cell in ("rnn", "lstm", "gru") for seed in ("0", "1")
    ]
    assert {"run_dir", "test_r2", "test_mse", "persistence_r2", "train_seconds"} <= set(rows[0])
    for row in rows:
        assert (out / row["run_dir"] / "metrics.json").is_file()
        # One whole line per finished run, even where rich folds at 80 columns (a captured log).
        head, path = f"{row['cell']} seed {row['seed']}: test_", str(out / row["run_dir"])
        assert any(s.startswith(head) and s.endswith(path) for s in err.splitlines()), err
    # The two seeds are two different runs.
    assert rows[0]["test_mse"] != rows[1]["test_mse"]
    md = (out / "compare.md").read_text()
    assert "| metric | rnn | lstm | gru | all |" in md
    table = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if "|" in line}
    assert {"test_r2", "test_mse", "train_seconds"} <= set(table)
    # Two seeds of a cell train differently; their training times may tie to the millisecond.
    assert table["test_r2"].count("±") == 3 and table["test_mse"].count("±") == 3
    # What every seed shares is shown once, without "± 0".
    assert "| epochs | 1 | 1 | 1 |  |" in md
    assert "rnnlab compare air-quality --cells rnn,lstm,gru --seeds 2" in md
    assert "test_r2" in stdout and "ensemble test_r2" in stdout
    # Each cell's two seeds averaged into one model: the squared error of a mean prediction is
    # at most the mean of the squared errors (convexity), and here differs from both.
    ensemble = {
        cells[0].strip("| "): [float(v.strip("| ")) for v in cells[1:]]
        for line in md.splitlines()
        if line.startswith("| ensemble ") and (cells := line.split(" | "))
    }
    assert {"ensemble test_mse", "ensemble test_r2"} <= set(ensemble)
    for k, cell in enumerate(("rnn", "lstm", "gru")):
        mse = [float(r["test_mse"]) for r in rows if r["cell"] == cell]
        assert ensemble["ensemble test_mse"][k] <= sum(mse) / 2 + 1e-4
        assert all(abs(ensemble["ensemble test_mse"][k] - m) > 1e-6 for m in mse)
    # Column `all`: the six runs averaged into one model.
    all_mse = [float(r["test_mse"]) for r in rows]
    assert ensemble["ensemble test_mse"][3] <= sum(all_mse) / len(all_mse) + 1e-4


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--cells", "lstm,cnn"], ["--cells", "lstm,cnn"]),
        (["--seeds", "0"], ["--seeds"]),
        (["--set", "train.epochz=1"], ["train.epochz"]),
        (["--set", "model.forget_bias=1.0"], ["model.forget_bias", "lstm"]),
    ],
)
def test_compare_bad_options_fail_before_any_run(capsys, tmp_path, args, names):
    out = tmp_path / "study"
    code, _, err = rnnlab(capsys, "compare", "air-quality", "--out", str(out), *args)
    assert_one_line_error(code, err, *names)
    assert not out.exists()


def test_mean_and_sample_standard_deviation():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([0.5]) == (0.5, 0.0)


def test_curves_of_runs_that_stopped_at_different_epochs(tmp_path):
    def history(values):
        return [{"epoch": i + 1, "train_loss": 1.0, "val_acc": v} for i, v in enumerate(values)]

    histories = {"lstm": [history([0.1, 0.2, 0.3]), history([0.2, 0.3])], "gru": [history([0.5])]}
    plots.compare_curves(histories, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_can_train_each_run_in_two_processes(capfd, shared_data, tmp_path):
    out = tmp_path / "study"
    code, stdout, err = rnnlab(
        capfd, "compare", "air-quality", "--cells", "lstm", "--seeds", "1", "--procs", "2",
        "--device", "cpu", "--data-dir", str(shared_data), "--out", str(out), *_sets(*TINY),
    )  # fmt: skip
    assert code == 0, err
    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["cell"], r["processes"]) for r in rows] == [("lstm", "2")]
    assert "--procs 2" in (out / "compare.md").read_text()
    # The series reports each run once; the launched run's own "run directory" line is dropped.
    assert "run directory:" not in stdout + err


def test_an_interrupted_study_resumes_where_it_stopped(shared_data, tmp_path):
    """Ctrl-C in the second run: `--resume` keeps the first, continues the second from its
    checkpoint, and the study ends exactly as one never interrupted."""
    import signal
    import subprocess
    import sys

    from test_resume import SETTINGS, _start_and_stop

    def command(out, *extra):
        args = [sys.executable, "-m", "rnnlab", "compare", "air-quality", "--quiet"]
        args += ["--device", "cpu", "--data-dir", str(shared_data), *extra]
        return args + (["--out", str(out), "--cells", "rnn,lstm", "--seeds", "1"] if out else [])

    sets = _sets(*SETTINGS)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = subprocess.run(command(whole, *sets), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stopped = _start_and_stop(command(cut, *sets), cut / "lstm-seed0", signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1 and f"rnnlab compare air-quality --resume {cut}" in lines[0]
    first = (cut / "rnn-seed0" / "metrics.json").read_text()  # kept as it is, not retrained
    assert not (cut / "compare.csv").exists()

    resumed = subprocess.run(command(None, "--resume", str(cut)), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert (cut / "rnn-seed0" / "metrics.json").read_text() == first

    def results(study):
        with open(study / "compare.csv") as f:
            return [{k: v for k, v in r.items() if "seconds" not in k} for r in csv.DictReader(f)]

    assert results(cut) == results(whole)
    assert (
        "`rnnlab compare air-quality --cells rnn,lstm --seeds 1 --set"
        in (cut / "compare.md").read_text()
    )


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--seeds", "2"], ["--resume", "drop --seeds"]),
        (["--set", "train.epochs=2"], ["--resume", "drop --set"]),
    ],
)
def test_resume_takes_the_study_as_planned(capsys, tmp_path, args, names):
    code, _, err = rnnlab(capsys, "compare", "air-quality", "--resume", str(tmp_path), *args)
    assert_one_line_error(code, err, *names)


def test_resume_needs_a_study(capsys, tmp_path):
    code, _, err = rnnlab(capsys, "compare", "air-quality", "--resume", str(tmp_path))
    assert_one_line_error(code, err, str(tmp_path / "plan.json"), "missing")


@pytest.mark.parametrize(
    ("plan", "names"),
    [
        ('{"study": {"command": "lab", "setting": ""}, "runs": []}', ["`rnnlab lab`", "not of"]),
        ('{"study": {"command": "compare"}, "runs": []}', ["plan.json", "no runs"]),
        (
            '{"study": {"command": "compare"}, "runs": [{"dir": "../x"}]}',
            ["'../x'", "not a folder"],
        ),
        ('{"runs": []}', ["plan.json", "not a plan written by rnnlab"]),
        ("[1, 2", ["plan.json", "not valid JSON"]),
    ],
)
def test_a_bad_plan_is_a_one_line_error(capsys, tmp_path, plan, names):
    (tmp_path / "plan.json").write_text(plan)
    code, _, err = rnnlab(capsys, "compare", "air-quality", "--resume", str(tmp_path))
    assert_one_line_error(code, err, *names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
