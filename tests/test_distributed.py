"""torchrun with 2 CPU processes (gloo) trains exactly as one process with the same global batch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from rnnlab.distributed import World

# 2000 rows with batch 64: the last batch of each epoch splits unevenly between the processes.
SETTINGS = [
    "data.train_rows=2000", "data.test_rows=500", "train.epochs=2", "train.batch_size=64",
]  # fmt: skip


def _rnnlab(launcher: list[str], out, shared_data) -> None:
    args = [*launcher, "-m", "rnnlab", "run", "air-quality", "--quiet", "--device", "cpu"]
    args += ["--out", str(out), "--data-dir", str(shared_data)]
    for s in SETTINGS:
        args += ["--set", s]
    # One thread per process on both sides: the same arithmetic, and no oversubscription.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _history(out) -> list[dict[str, float]]:
    with open(out / "history.csv") as f:
        return [
            {k: float(v) for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)
        ]


def test_two_gloo_processes_match_one_process(shared_data, tmp_path):
    _rnnlab([sys.executable], tmp_path / "one", shared_data)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    _rnnlab([*torchrun, "--nproc_per_node", "2"], tmp_path / "two", shared_data)

    # Only rank 0 wrote: the two run directories and nothing else.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert (one["processes"], two["processes"]) == (1, 2)
    for key in ("test_mse", "test_r2", "test_mae"):
        assert two[key] == pytest.approx(one[key], rel=1e-5), key
    for a, b in zip(_history(tmp_path / "one"), _history(tmp_path / "two"), strict=True):
        assert b == pytest.approx(a, rel=1e-5)


def test_each_process_takes_its_own_rows_of_the_batch():
    batch = {"x": torch.arange(10)[:, None], "y": torch.arange(10)}
    parts = [World(rank, 3).shard(batch) for rank in range(3)]
    assert [(part["y"].tolist(), n) for part, n in parts] == [
        ([0, 3, 6, 9], 4), ([1, 4, 7], 3), ([2, 5, 8], 3),
    ]  # fmt: skip
    alone, n = World().shard(batch)
    assert alone is batch and n == 10


def test_a_process_left_without_rows_gets_a_stand_in_row_of_weight_zero():
    batch = {"x": torch.arange(2)[:, None], "y": torch.arange(2)}
    part, n = World(2, 3).shard(batch)
    assert part["y"].tolist() == [0] and n == 0
