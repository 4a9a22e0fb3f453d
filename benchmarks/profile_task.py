"""Where a task's time goes: torch.profiler's table of the ops of a short run, on the CPU.

    python benchmarks/profile_task.py air-quality --set train.epochs=2
    python benchmarks/profile_task.py addition --set train.epochs=1 --set 'train.precision="bf16"'

Prints, first, what importing ``torch._dynamo`` costs: torch's optimizers import it at their first
use, so every PyTorch training run pays it once (it is not in the table's ops). Then the ops of
the whole run (data loading, training, evaluation), sorted by their own CPU time; the run's
training steps dominate it for any run of more than a few steps.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import run_main, task_parser

from rnnlab.runs.pipeline import run
from rnnlab.tasks import get_task


def main() -> None:
    parser = task_parser(__doc__, "train.epochs=2")
    parser.add_argument("--rows", type=int, default=25, help="ops to show")
    args = parser.parse_args()
    task_cls = get_task(args.task)
    cfg = task_cls.config(None, args.set)

    start = time.perf_counter()
    import torch._dynamo  # noqa: F401  (what torch.optim imports at its first use)

    print(f"import torch._dynamo: {time.perf_counter() - start:.2f} s", file=sys.stderr)
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory() as out, profile(activities=[ProfilerActivity.CPU]) as prof:
        run(task_cls, cfg, Path(out) / args.task, "cpu", True, args.data_dir)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    run_main(main)
