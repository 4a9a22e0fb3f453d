"""Faults a run survives, and files that parse but are wrong: a full disk, a second process on the
same run, an edited config on resume, a thread that cannot start, damaged model and checkpoint
files, a busy machine. Each gets one line naming the file or key, and nothing is lost."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import safetensors.torch
import torch
from cli_helpers import assert_one_line_error, rnnlab

from rnnlab import runtime, tasks
from rnnlab.runs import pipeline
from rnnlab.runs.rundir import LOCK, run_lock
from rnnlab.training import checkpoint

# One thread: runs compared with each other compute alike, whatever the machine's load.
TINY = ["data.train_rows=2000", "data.test_rows=300", "model.hidden=8", "train.epochs=2"]
TINY += ["train.threads=1"]
TIMING = {"train_seconds", "eval_seconds", "threads"}


def _sets(*sets: str) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


def _command(shared_data: Path, *args: str) -> list[str]:
    base = [sys.executable, "-m", "rnnlab", "run", "air-quality", "--quiet", "--device", "cpu"]
    return [*base, "--data-dir", str(shared_data), *args]


def _run_limited(shared_data: Path, out: Path, max_bytes: int) -> subprocess.CompletedProcess:
    """The tiny run in a process that cannot write a file past ``max_bytes`` (a disk that fills
    up: the write fails with an OSError, as a full disk's does)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    command = _command(shared_data, "--out", str(out), *_sets(*TINY))
    return subprocess.run(command, capture_output=True, text=True, preexec_fn=limit)


def _metrics(run_dir: Path) -> dict:
    found = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in found.items() if k not in TIMING}


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".new", ".old"))]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, shared_data) -> Path:
    """The tiny run, uninterrupted: what a run that met a fault must end as once resumed."""
    out = tmp_path_factory.mktemp("whole") / "run"
    done = subprocess.run(_command(shared_data, "--out", str(out), *_sets(*TINY)), text=True)
    assert done.returncode == 0
    return out


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_nothing_half_written(
    shared_data, tmp_path
):
    out = tmp_path / "run"
    # config.toml fits; the checkpoint (weights, best weights, optimizer state) does not.
    done = _run_limited(shared_data, out, 4000)
    assert_one_line_error(done.returncode, done.stderr, str(out / "last" / "state.safetensors"))
    assert "could not be written" in done.stderr and "there is none yet" in done.stderr
    assert not _leftovers(tmp_path), _leftovers(tmp_path)
    assert not (out / "metrics.json").exists()


def test_final_files_that_cannot_be_written_leave_a_run_that_resume_finishes(
    shared_data, tmp_path, whole_run
):
    out = tmp_path / "run"
    # Checkpoints, config, history and weights fit; the plots do not.
    done = _run_limited(shared_data, out, 50_000)
    assert_one_line_error(done.returncode, done.stderr, ".png", "File too large")
    assert not (out / "metrics.json").exists(), "a run is finished only when all its files are"
    assert not _leftovers(tmp_path)
    resumed = subprocess.run(
        _command(shared_data, "--resume", str(out)), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert {p.name for p in whole_run.iterdir()} == {p.name for p in out.iterdir()}
    assert _metrics(out) == _metrics(whole_run)


def test_a_failed_checkpoint_write_keeps_the_last_good_one(
    shared_data, tmp_path, monkeypatch, capsys
):
    synced = []
    real = os.fsync

    def full_after_first_checkpoint(fd: int) -> None:
        synced.append(fd)
        if len(synced) > 2:  # the first checkpoint's two files are on disk; then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", full_after_first_checkpoint)
    out = tmp_path / "run"
    code, _, err = rnnlab(capsys, *_command(shared_data, "--out", str(out))[3:], *_sets(*TINY))
    assert_one_line_error(code, err, str(out / "last" / checkpoint.TENSORS), "No space left")
    assert "the last good one is kept" in err
    assert json.loads((out / "last" / checkpoint.META).read_text())["progress"]["epoch"] == 1
    assert not _leftovers(tmp_path)
    monkeypatch.setattr(os, "fsync", real)
    code, _, err = rnnlab(capsys, *_command(shared_data, "--resume", str(out))[3:])
    assert code == 0, err
    assert (out / "metrics.json").exists()


def test_a_checkpoint_follows_the_umask_like_every_other_file(shared_data, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(_command(shared_data, "--out", str(out), *_sets(*TINY)), text=True)
    assert done.returncode == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert modes["state.safetensors"] == modes["model.safetensors"] == modes["metrics.json"]


def test_resume_refuses_a_config_edited_since_the_checkpoint(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    cfg_path = out / "config.toml"
    code, _, err = rnnlab(capsys, *_command(shared_data, "--out", str(out))[3:], *_sets(*TINY))
    assert code == 0, err
    (out / "metrics.json").unlink()  # as if it stopped before its end
    cfg_path.write_text(cfg_path.read_text().replace("lr = 0.001", "lr = 0.5"))
    code, _, err = rnnlab(capsys, *_command(shared_data, "--resume", str(out))[3:])
    assert_one_line_error(code, err, str(cfg_path), "train.lr is 0.5", "trained with 0.001")


def test_a_run_still_training_is_not_resumed_beside_it(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = rnnlab(capsys, *_command(shared_data, "--out", str(out))[3:], *_sets(*TINY))
    assert code == 0, err
    (out / "metrics.json").unlink()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time,fcntl; f=open(sys.argv[1],'a+');"
         "fcntl.flock(f, fcntl.LOCK_EX); f.seek(0); f.truncate(); f.write('4242'); f.flush(); print('held', flush=True);"
         "time.sleep(60)", str(out / LOCK)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = rnnlab(capsys, *_command(shared_data, "--resume", str(out))[3:])
        assert_one_line_error(code, err, str(out), "another rnnlab process", "4242")
    finally:
        holder.kill()  # a killed process leaves its lock file; the lock itself goes with it
        holder.wait()
    assert (out / LOCK).exists()
    code, _, err = rnnlab(capsys, *_command(shared_data, "--resume", str(out))[3:])
    assert code == 0, err


def test_the_lock_is_held_for_the_runs_lifetime_only(tmp_path):
    with run_lock(tmp_path):
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
        probe = f"import fcntl; f=open({str(tmp_path / LOCK)!r}); fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)"
        held = subprocess.run([sys.executable, "-c", probe], capture_output=True)
        assert held.returncode != 0  # another process cannot take it
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True)
    assert free.returncode == 0


def test_an_epoch_is_saved_in_the_foreground_when_no_thread_can_start(
    shared_data, tmp_path, monkeypatch
):
    real_start = threading.Thread.start

    def refused(self: threading.Thread) -> None:
        if self.name == "rnnlab-checkpoint":
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", refused)
    cls = tasks.get_task("air-quality")
    out = tmp_path / "run"
    pipeline.run(cls, cls.config(None, TINY), out, "cpu", True, shared_data)
    assert json.loads((out / "last" / checkpoint.META).read_text())["progress"]["epoch"] == 2
    assert (out / "metrics.json").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trained")
    specs = {
        "air-quality": TINY,
        "sentiment": ["model.hidden=4", "model.embedding=4", "data.num_words=300", "train.epochs=1"],
        "text-generation": ["data.mode='stream'", "model.hidden=8", "train.bptt=16", "train.epochs=1"],
    }  # fmt: skip
    made = {}
    for name, sets in specs.items():
        cls = tasks.get_task(name)
        made[name] = pipeline.run(
            cls, cls.config(None, sets), base / name, "cpu", True, shared_data
        )
    return made


def _edited(trained: dict[str, Path], task: str, tmp_path: Path, **entries) -> Path:
    run = tmp_path / task
    shutil.copytree(trained[task], run)
    meta = json.loads((run / "model.json").read_text())
    for key, value in entries.items():
        target, *path = key.split("__")
        holder = meta
        for part in [target, *path][:-1]:
            holder = holder[part]
        holder[[target, *path][-1]] = value
    (run / "model.json").write_text(json.dumps(meta))
    return run


@pytest.mark.parametrize(
    ("task", "entries", "inputs", "words"),
    [
        ("air-quality", {"columns": "abc"}, ["x.csv"], ["'columns'", "a list of a string"]),
        ("air-quality", {"scaler__std": [0.0]}, ["x.csv"], ["'scaler.std'", "above 0"]),
        ("air-quality", {"features": 0.5}, ["x.csv"], ["'features'", "an integer"]),
        ("sentiment", {"vocab": "[1, 2]"}, ["good"], ["'vocab'", "not a vocabulary"]),
        ("sentiment", {"classes": {"a": 1}}, ["good"], ["'classes'", "a list"]),
        ("text-generation", {"vocab": '{"chars": 5}'}, [], ["'vocab'", "character vocabulary"]),
    ],
)
def test_model_json_entries_of_the_wrong_type_are_one_line_errors(
    capsys, trained, tmp_path, task, entries, inputs, words
):
    run = _edited(trained, task, tmp_path, **entries)
    command = ["generate", str(run)] if task == "text-generation" else ["predict", str(run)]
    code, _, err = rnnlab(capsys, *command, *inputs)
    assert_one_line_error(code, err, str(run / "model.json"), *words)


def test_weights_that_are_not_finite_are_refused(capsys, trained, tmp_path, shared_data):
    run = tmp_path / "nan"
    shutil.copytree(trained["air-quality"], run)
    weights = safetensors.torch.load_file(str(run / "model.safetensors"))
    weights = {k: torch.full_like(v, float("nan")) for k, v in weights.items()}
    safetensors.torch.save_file(weights, str(run / "model.safetensors"))
    code, _, err = rnnlab(capsys, "eval", str(run), "--data-dir", str(shared_data))
    assert_one_line_error(code, err, str(run / "model.safetensors"), "NaN or infinite")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda s: s["progress"].update(epoch="one"), ["'epoch'", "an integer"]),
        (lambda s: s.update(rng="none"), ["'rng'", "a table"]),
        (lambda s: s["optimizer"].update(param_groups=[{"lr": 0.1}]), ["damaged checkpoint"]),
        (lambda s: s.pop("carry"), ["'carry'", "an entry"]),
    ],
)
def test_a_damaged_checkpoint_state_is_a_one_line_error(
    capsys, trained, tmp_path, shared_data, edit, words
):
    run = tmp_path / "run"
    shutil.copytree(trained["air-quality"], run)
    (run / "metrics.json").unlink()
    state = json.loads((run / "last" / checkpoint.META).read_text())
    edit(state)
    (run / "last" / checkpoint.META).write_text(json.dumps(state))
    args = ["run", "air-quality", "--quiet", "--device", "cpu", "--data-dir", str(shared_data)]
    code, _, err = rnnlab(capsys, *args, "--resume", str(run))
    assert_one_line_error(code, err, "state.json", *words)


def test_a_checkpoint_with_weights_that_are_not_finite_is_refused(
    capsys, trained, tmp_path, shared_data
):
    run = tmp_path / "run"
    shutil.copytree(trained["air-quality"], run)
    (run / "metrics.json").unlink()
    path = run / "last" / checkpoint.TENSORS
    tensors = safetensors.torch.load_file(str(path))
    name = next(k for k in tensors if k.startswith("model."))
    tensors[name] = torch.full_like(tensors[name], float("inf"))
    safetensors.torch.save_file(tensors, str(path))
    args = ["run", "air-quality", "--quiet", "--device", "cpu", "--data-dir", str(shared_data)]
    code, _, err = rnnlab(capsys, *args, "--resume", str(run))
    assert_one_line_error(code, err, str(path), name, "NaN or infinite")


def test_generate_refuses_a_length_past_its_limit_before_any_work(capsys, trained):
    run = str(trained["text-generation"])
    code, out, err = rnnlab(capsys, "generate", run, "--length", "99999999999999999999")
    assert_one_line_error(code, err, "length", "1,000,000")
    assert out == ""


def test_generate_reports_its_progress(trained):
    from rnnlab.runs.restore import restore

    task, model = restore(tasks.get_task("text-generation"), trained["text-generation"], "cpu")
    seen: list[tuple[int, int]] = []
    task.samples(model, length=600, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(256, 600), (512, 600)]


def test_a_diverged_run_without_a_checkpoint_names_none(shared_data, tmp_path):
    rows = "\n".join(str((-1) ** i * 1e30) for i in range(3000))
    series = tmp_path / "wild.csv"
    series.write_text(f"load\n{rows}\n")
    args = [
        "--set",
        f"data.path='{series}'",
        "--set",
        "train.lr=1e30",
        "--out",
        str(tmp_path / "r"),
    ]
    done = subprocess.run(_command(shared_data, *args), capture_output=True, text=True)
    assert_one_line_error(done.returncode, done.stderr, "diverged")
    assert "last" not in done.stderr and "Warning" not in done.stderr


def test_a_bad_config_in_a_study_plan_names_the_plan(capsys, shared_data, tmp_path):
    out = tmp_path / "study"
    args = ["compare", "air-quality", "--cells", "lstm", "--seeds", "1", "--quiet"]
    args += ["--device", "cpu", "--data-dir", str(shared_data), "--out", str(out)]
    code, _, err = rnnlab(capsys, *args, *_sets(*TINY))
    assert code == 0, err
    plan = out / "plan.json"
    plan.write_text(plan.read_text().replace("epochs = 2", "epochs = -1"))
    for run in out.glob("lstm*"):
        shutil.rmtree(run)
    code, _, err = rnnlab(
        capsys, "compare", "air-quality", "--resume", str(out), "--data-dir", str(shared_data)
    )
    assert_one_line_error(code, err, str(plan), "train.epochs must be >= 1")


def test_threads_leave_out_the_cpus_other_work_keeps_busy(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 4)
    monkeypatch.setattr(runtime, "busy_cpus", lambda: 2.8)
    chosen = runtime.choose_threads()
    assert (chosen.count, chosen.chosen) == (1, "auto")
    assert chosen.describe() == "1 thread (2.8 of 4 CPUs busy)"
    monkeypatch.setattr(runtime, "busy_cpus", lambda: 0.2)
    assert runtime.choose_threads().describe() == "4 threads"
    assert runtime.choose_threads(configured=3).count == 3
    assert runtime.choose_threads(resumed=2).count == 2


def test_busy_cpus_sees_a_competing_process():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = runtime.busy_cpus(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy >= 0.7


def test_a_run_says_its_threads_and_restores_the_count_after(shared_data, tmp_path, capsys):
    before = torch.get_num_threads()
    args = ["run", "air-quality", "--device", "cpu", "--data-dir", str(shared_data)]
    code, _, err = rnnlab(capsys, *args, "--out", str(tmp_path / "r"), *_sets(*TINY))
    assert code == 0, err
    assert "on cpu (1 thread (train.threads))" in err.replace("\n", "")
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["threads"] == 1
    assert torch.get_num_threads() == before


def test_seq2seq_trains_on_the_shipped_example_without_a_path(tmp_path, capsys):
    sets = ["train.epochs=1", "model.hidden=8", "model.embedding=8", "train.threads=1"]
    code, _, err = rnnlab(
        capsys, "run", "seq2seq", "--device", "cpu", "--out", str(tmp_path / "r"), *_sets(*sets)
    )
    assert code == 0, err
    assert "dates.tsv" in err.replace("\n", "")
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["train_examples"] == 4000
