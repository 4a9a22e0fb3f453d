"""Checkpoints and resume: a run killed (even with SIGKILL) and resumed ends exactly where an
uninterrupted run with the same seed ends; SIGINT saves a checkpoint and says how to resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TIMING = {"train_seconds", "eval_seconds"}
# A tiny air-quality run with dropout between layers, so the torch RNG state matters on resume.
SETTINGS = [
    "data.train_rows=3000", "data.test_rows=500", "model.hidden=8", "model.layers=2",
    "model.dropout=0.3", "train.epochs=4", "train.batch_size=32", "train.checkpoint_every=5",
    "train.schedule='cosine'",
    "train.threads=1",  # runs compared bit for bit: the same threads, whatever the machine's load
]  # fmt: skip


def _command(shared_data: Path, out: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "rnnlab", "run", "air-quality", "--quiet", "--device", "cpu"]
    args += ["--data-dir", str(shared_data), "--out", str(out), *extra]
    return args


def _sets() -> list[str]:
    return [arg for s in SETTINGS for arg in ("--set", s)]


def _metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING}


def _history(run_dir: Path) -> list[list[str]]:
    # Every column but the wall-clock seconds.
    lines = (run_dir / "history.csv").read_text().splitlines()
    return [line.split(",")[:-1] for line in lines]


def _start_and_stop(
    cmd: list[str], out: Path, sig: int, group: bool = False
) -> subprocess.CompletedProcess:
    """Run ``cmd``, send ``sig`` mid-run (with ``group``, to all its processes, as Ctrl-C does)."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=group,
    )  # fmt: skip
    state = out / "last" / "state.json"
    deadline = time.time() + 120
    # Wait for a mid-run checkpoint of the second epoch, then stop the process.
    while time.time() < deadline and proc.poll() is None:
        if state.exists():
            try:
                progress = json.loads(state.read_text())["progress"]
            except (json.JSONDecodeError, KeyError, FileNotFoundError):  # mid-swap
                progress = {"epoch": 0}
            if progress["epoch"] >= 1 and progress["step"] > 0:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(shared_data, tmp_path, sig):
    whole = tmp_path / "whole"
    done = subprocess.run(_command(shared_data, whole, *_sets()), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    cut = tmp_path / "cut"
    stopped = _start_and_stop(_command(shared_data, cut, *_sets()), cut, sig)
    assert not (cut / "metrics.json").exists()
    if sig != signal.SIGKILL:  # the shell's convention: 128 + the signal (130 for Ctrl-C)
        assert stopped.returncode == 128 + sig
        lines = stopped.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in stopped.stderr
        assert f"--resume {cut}" in lines[0] and sig.name in lines[0]
    else:
        assert stopped.returncode == -signal.SIGKILL

    resumed = subprocess.run(
        _command(shared_data, cut, "--resume", str(cut)), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(cut) == _metrics(whole)
    assert _history(cut) == _history(whole)


def test_resume_refuses_overrides_and_missing_checkpoints(shared_data, tmp_path):
    proc = subprocess.run(
        _command(shared_data, tmp_path / "x", "--resume", str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_checkpoint_holds_the_state_of_its_snapshot_not_of_later_steps(tmp_path):
    # The trainer writes checkpoints in the background while training goes on: what is written
    # must be the state at the snapshot, though on the CPU the weights are updated in place.
    import torch
    from torch import nn

    from rnnlab.training import checkpoint

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def step() -> None:
        optimizer.zero_grad()
        model(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()

    step()
    state = checkpoint.snapshot(
        model=model,
        optimizer=optimizer,
        schedule=None,
        scaler=scaler,
        progress={"epoch": 1},
        best=None,
        carry=None,
    )
    then = {k: v.clone() for k, v in model.state_dict().items()}
    momentum = optimizer.state[model.weight]["momentum_buffer"].clone()
    step()
    checkpoint.write(tmp_path / "last", state)

    restored = nn.Linear(3, 2)
    restored_optimizer = torch.optim.SGD(restored.parameters(), lr=0.1, momentum=0.9)
    progress, _, _ = checkpoint.load(
        tmp_path / "last",
        model=restored,
        optimizer=restored_optimizer,
        schedule=None,
        scaler=scaler,
        device=torch.device("cpu"),
    )
    assert progress == {"epoch": 1}
    for key, value in restored.state_dict().items():
        assert torch.equal(value, then[key])
        assert not torch.equal(value, model.state_dict()[key])
    assert torch.equal(restored_optimizer.state[restored.weight]["momentum_buffer"], momentum)


def test_a_tensor_learning_rate_and_its_schedule_resume_in_the_same_tensor(tmp_path):
    # Under CUDA graphs the rate is a tensor the graphs read: a checkpoint stores its number, and
    # resuming fills the live tensor (the graphs keep reading it) and the schedule's step count.
    import torch
    from torch import nn

    from rnnlab.training import checkpoint
    from rnnlab.training.config import TrainConfig
    from rnnlab.training.optim import TensorCosine, build_optimizer, build_schedule

    cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, schedule="cosine")
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(model.parameters(), cfg, lr_on=torch.device("cpu"))
    schedule = build_schedule(optimizer, cfg, steps=10)
    assert isinstance(schedule, TensorCosine)
    for _ in range(4):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
        schedule.step()
    kept = optimizer.param_groups[0]["lr"].item()
    state = checkpoint.snapshot(
        model=model, optimizer=optimizer, schedule=schedule, scaler=scaler,
        progress={}, best=None, carry=None,
    )  # fmt: skip
    checkpoint.write(tmp_path / "last", state)

    fresh = build_optimizer(model.parameters(), cfg, lr_on=torch.device("cpu"))
    rate = fresh.param_groups[0]["lr"]
    again = build_schedule(fresh, cfg, steps=10)
    checkpoint.load(
        tmp_path / "last", model=model, optimizer=fresh, schedule=again, scaler=scaler,
        device=torch.device("cpu"),
    )  # fmt: skip
    assert fresh.param_groups[0]["lr"] is rate and rate.item() == kept
    assert again.last_epoch == 4
    # A float-rate run (the CPU's) continues the tensor-rate checkpoint with the same rate.
    plain = build_optimizer(model.parameters(), cfg)
    cosine = build_schedule(plain, cfg, steps=10)
    checkpoint.load(
        tmp_path / "last", model=model, optimizer=plain, schedule=cosine, scaler=scaler,
        device=torch.device("cpu"),
    )  # fmt: skip
    plain.step()  # no gradients: nothing moves, but the schedule may step after it
    cosine.step()
    again.step()
    assert plain.param_groups[0]["lr"] == pytest.approx(rate.item(), rel=1e-6)
