"""The benchmark scripts' own arithmetic, on tiny runs: what they print must be what the runs did."""

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sweep_reports_the_lowest_validation_error_of_each_run(shared_data, tmp_path):
    # air quality monitors val_mse: its best epoch is the lowest, where accuracy's is the highest
    tiny = "data.train_rows=2000;data.test_rows=300;model.hidden=4;train.epochs=4;train.lr=0.01"
    args = [sys.executable, str(ROOT / "benchmarks" / "sweep.py"), "air-quality", "--quiet"]
    args += ["--seeds", "1", "--variant", tiny, "--device", "cpu", "--data-dir", str(shared_data)]
    args += ["--out", str(tmp_path / "runs"), "--json", str(tmp_path / "sweep.json")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((tmp_path / "sweep.json").read_text())
    (history,) = (tmp_path / "runs" / "v0").rglob("history.csv")
    with open(history, newline="") as f:
        val = [float(r["val_mse"]) for r in csv.DictReader(f)]
    assert len(val) == 4 and min(val) < max(val)
    assert row["best_val_mean"] == min(val)
