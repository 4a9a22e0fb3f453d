"""Try variants of a config, a few seeds each, in one process: which change helps, beyond the seeds' spread?

    python benchmarks/sweep.py electric-devices --config configs/electric-devices-best.toml \\
        --seeds 3 --variant "" --variant "model.hidden=128" \\
        --variant "model.hidden=128;model.dropout=0.5" --json sweep.json

Each ``--variant`` is a ``;``-separated list of ``--set`` overrides (``""``: the config as it is);
each runs as ``rnnlab compare TASK --cells CELL --seeds N --set …`` would. One line per variant:
the test metric of every seed, their mean ± standard deviation, the seeds averaged into one model
(where the task allows it), the mean best validation value, and the seconds of training. On a
GPU one process pays CUDA's start once for the whole sweep.

While it runs, a bar counts each variant's epochs and a line per finished run says its test
metric (on stderr; ``--quiet`` hides them). The runs go to a temporary folder unless ``--out DIR``
keeps them (one study per variant, ``DIR/vK``): a variant stopped half way then continues with
``rnnlab compare TASK --resume DIR/vK``.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

from common import run_main

from rnnlab.runs.compare import compare, mean_std
from rnnlab.tasks import get_task
from rnnlab.training.callbacks import lower_is_better


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("task")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--variant", action="append", required=True, help="'K=V;K=V' or ''")
    parser.add_argument("--cell", default=None, help="default: the config's model.cell")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args()

    task_cls = get_task(args.task)
    monitor = task_cls.config(args.config).train.monitor
    metric = "test_" + monitor.removeprefix("val_")
    results = []
    print(f"{'variant':<48}{'mean':>8}{'std':>8}{'avg':>8}{'val':>8}{'s':>7}  {metric} per seed")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        for k, variant in enumerate(args.variant):
            overrides = [s.strip() for s in variant.split(";") if s.strip()]
            cell = args.cell or task_cls.config(args.config, overrides).model.cell
            start = time.perf_counter()
            out, table = compare(
                args.task,
                [cell],
                args.seeds,
                overrides,
                args.config,
                folder / f"v{k}",
                args.device,
                args.data_dir,
                quiet=args.quiet,
            )
            with open(out / "compare.csv", newline="") as f:
                runs = list(csv.DictReader(f))
            values = [float(r[metric]) for r in runs]
            mean, std = mean_std(values)
            best_val = []
            for r in runs:
                with open(out / r["run_dir"] / "history.csv", newline="") as f:
                    history = [float(row[monitor]) for row in csv.DictReader(f)]
                best_val.append(min(history) if lower_is_better(monitor) else max(history))
            averaged = table.get(f"ensemble {metric}", {}).get(cell)
            row = {
                "variant": variant or "(config as is)",
                "cell": cell,
                metric: values,
                "mean": mean,
                "std": std,
                "ensemble": float(averaged) if averaged else None,
                "best_val_mean": mean_std(best_val)[0],
                "train_seconds": [float(r["train_seconds"]) for r in runs],
                "wall_seconds": round(time.perf_counter() - start, 1),
            }
            results.append(row)
            print(
                f"{row['variant']:<48}{row['mean']:>8.4f}{row['std']:>8.4f}"
                f"{row['ensemble'] or float('nan'):>8.4f}{row['best_val_mean']:>8.4f}"
                f"{row['wall_seconds']:>7.0f}  {' '.join(f'{v:.4f}' for v in values)}",
                flush=True,
            )
            if args.json:  # after every variant: a sweep stopped early keeps what it did
                args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    run_main(main)
