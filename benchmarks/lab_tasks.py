"""Run lab tasks at their settings and print wall time, time per epoch and the headline metric.

    python benchmarks/lab_tasks.py                                  # every task, lab settings
    python benchmarks/lab_tasks.py --tasks air-quality,sentiment --set train.precision=\"bf16\"
    python benchmarks/lab_tasks.py --best                           # configs/TASK-best.toml
    python benchmarks/lab_tasks.py --json results.json

Each line is comparable to the lab's Keras script run on the same machine (figures from the issues,
measured side by side on a 2-core AMD EPYC): wall seconds from process-level start of the task (data
loading, training, evaluation, writing the run directory) to its end.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import rnnlab
from rnnlab.config import CONFIG_DIR
from rnnlab.tasks import TASKS, get_task, run

# task -> (headline metric, Keras wall seconds, Keras metric) as measured on this machine.
KERAS = {
    "air-quality": ("test_r2", 12.2, 0.795),
    "electric-devices": ("test_accuracy", 119.0, 0.545),
    "sentiment": ("test_accuracy", 58.6, 0.808),
    "text-generation": ("val_bpc", 2.95 * 100, 2.856),
    "addition": ("test_exact_match", 182.0, 0.996),  # Keras: val exact match
    "text-generation:stream": ("val_bpc", 2.95 * 100, 2.856),
}

# Rows beyond the lab settings: name -> (task, overrides). Stream mode is the same LSTM 64 trained
# with truncated BPTT (the goal: beat Keras's val_bpc in <= 5 s of training).
VARIANTS = {
    "text-generation:stream": (
        "text-generation",
        [
            "data.mode='stream'",
            "train.batch_size=64",
            "train.bptt=32",
            "train.lr=0.02",
            "train.clip_norm=1.0",
            "train.epochs=5",
        ],
    ),
}


def bench(task: str, overrides: list[str], best: bool, device: str, data_dir: Path | None) -> dict:
    name = task
    task, extra = VARIANTS.get(name, (name, []))
    if not best:  # a best config sets its own mode
        overrides = extra + overrides
    task_cls = get_task(task)
    config = CONFIG_DIR / f"{task}-best.toml" if best else None
    if config is not None and not config.exists():
        raise SystemExit(f"no best config for {task}: {config}")
    cfg = task_cls.config(config, overrides)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_dir = run(task_cls, cfg, Path(out) / task, device, True, data_dir)
        wall = time.perf_counter() - start
        metrics = json.loads((run_dir / "metrics.json").read_text())
    key, keras_wall, keras_metric = KERAS.get(name, ("", float("nan"), float("nan")))
    return {
        "task": name,
        "config": str(config) if config else "lab",
        "wall_s": round(wall, 2),
        "train_s": metrics["train_seconds"],
        "epochs": metrics["epochs"],
        "s_per_epoch": round(metrics["train_seconds"] / metrics["epochs"], 3),
        "metric": key,
        "value": metrics.get(key),
        "keras_wall_s": keras_wall,
        "keras_value": keras_metric,
        "speedup_vs_keras": round(keras_wall / wall, 2),
        "metrics": metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--tasks", default=",".join([*TASKS, *VARIANTS]), help="comma-separated task names"
    )
    parser.add_argument("--set", action="append", default=[], help="override, e.g. train.epochs=5")
    parser.add_argument("--best", action="store_true", help="use configs/TASK-best.toml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    header = {
        "rnnlab": rnnlab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    print(" ".join(f"{k}={v}" for k, v in header.items()), file=sys.stderr)
    rows = []
    print(
        f"{'task':<24}{'wall s':>9}{'s/epoch':>9}{'epochs':>7}  {'metric':<16}{'value':>8}"
        f"{'keras s':>9}{'keras':>8}{'speedup':>9}"
    )
    for task in args.tasks.split(","):
        row = bench(task, args.set, args.best, args.device, args.data_dir)
        rows.append(row)
        value = row["value"] if row["value"] is not None else float("nan")
        print(
            f"{task:<24}{row['wall_s']:>9.1f}{row['s_per_epoch']:>9.3f}{row['epochs']:>7}  "
            f"{row['metric']:<16}{value:>8.4f}{row['keras_wall_s']:>9.1f}"
            f"{row['keras_value']:>8.3f}{row['speedup_vs_keras']:>8.1f}x",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
