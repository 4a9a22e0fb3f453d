"""CPU threads on an idle machine and beside competing processes: rnnlab's choice against fixed counts.

    python benchmarks/threads.py                                  # addition, 1 epoch, 0-2 competitors
    python benchmarks/threads.py --competitors 0,1,3 --repeats 3 --json threads.json
    python benchmarks/threads.py --task air-quality --data-dir DATA --set data.train_rows=8000

For each number of competitors (processes that each keep one core busy, as other users' jobs on a
shared machine do) it runs ``rnnlab run TASK`` in a fresh process with ``train.threads`` unset
(rnnlab chooses from the CPUs free, see ``rnnlab.runtime.choose_threads``), set to 1, and set to
every CPU, and prints the training seconds per epoch (``metrics.json``'s ``train_seconds`` over its
epochs) and the threads the run used. With ``--repeats N`` each setting runs N times and the table
shows the fastest, every wall in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnnlab.runtime import usable_cpus

SPIN = "while True: pass"


def one_run(task: str, sets: list[str], data_dir: Path | None, threads: int | None) -> dict:
    """Train once in a fresh process; its seconds per epoch and the threads it used."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        args = [sys.executable, "-m", "rnnlab", "run", task, "--quiet", "--device", "cpu"]
        args += ["--out", str(out)] + [a for s in sets for a in ("--set", s)]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir)]
        if threads is not None:
            args += ["--set", f"train.threads={threads}"]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        done = subprocess.run(args, capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(f"error: {' '.join(args)}: {done.stderr.strip()}")
        metrics = json.loads((out / "metrics.json").read_text())
    return {
        "epoch_seconds": metrics["train_seconds"] / metrics["epochs"],
        "threads": metrics["threads"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--task", default="addition")
    parser.add_argument(
        "--set", action="append", default=None, help="override, default train.epochs=1"
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--competitors", default="0,1,2", help="comma-separated counts")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sets = args.set if args.set is not None else ["train.epochs=1"]
    cpus = usable_cpus()
    settings = {"rnnlab's choice": None, "threads=1": 1, f"threads={cpus}": cpus}
    rows = []
    print(
        f"{args.task}, {' '.join(sets)}; {cpus} CPUs usable; seconds per epoch (fastest of {args.repeats})"
    )
    print(f"{'competitors':>11}  " + "  ".join(f"{name:>22}" for name in settings))
    for count in [int(c) for c in args.competitors.split(",")]:
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
        try:
            time.sleep(1.0 if count else 0.0)  # the competitors under way before the run looks
            cells = []
            for name, threads in settings.items():
                runs = [
                    one_run(args.task, sets, args.data_dir, threads) for _ in range(args.repeats)
                ]
                best = min(runs, key=lambda r: r["epoch_seconds"])
                rows.append({"competitors": count, "setting": name, "runs": runs})
                cells.append(f"{best['epoch_seconds']:7.2f} s ({best['threads']} thr)")
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
        print(f"{count:>11}  " + "  ".join(f"{cell:>22}" for cell in cells))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"task": args.task, "sets": sets, "cpus": cpus, "rows": rows}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
