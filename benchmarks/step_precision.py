"""A task's training step in fp32 and in bf16, alternated, against a bare matmul of its gate shape.

    python benchmarks/step_precision.py addition
    python benchmarks/step_precision.py sentiment --set train.batch_size=50 --rounds 4

The step is the trainer's (the task's loss under autocast, backward, the configured optimizer),
on the CPU, over the batches of the task's first training epoch in turn. The two precisions take
turns, ``--rounds`` times ``--steps`` steps each, so that the machine's drift falls on both alike;
printed: the fastest and the median ms a step of each, and the GFLOP/s of an average step's
matmuls (recurrent and linear, forward and backward, as ``lab_tasks.py`` counts them, over one
epoch). Then a bare ``torch.mm`` of the widest recurrent layer's gate shape, (batch x (inputs +
hidden)) @ ((inputs + hidden) x gates), in both precisions: a fused recurrent kernel does the same
matmuls and more (gates, the backward's elementwise work), so the step's matmuls at the bare rate
are a floor under the task's training time, printed for the config's epochs, beside the whole
step's time at its fastest for as many steps (the training alone, before loading, validations and
the report). Needs a CPU with bf16 instructions (AVX-512-BF16 or AMX).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable

import torch
from common import run_main, task_parser
from lab_tasks import GATES, count_flops

from rnnlab.nn import Recurrent
from rnnlab.tasks import get_task
from rnnlab.training.device import autocast, missing_for
from rnnlab.training.optim import build_optimizer


def time_steps(step: Callable[[str], None], precision: str, steps: int) -> float:
    """Mean seconds of ``steps`` calls of ``step(precision)`` after one warm-up call."""
    step(precision)
    start = time.perf_counter()
    for _ in range(steps):
        step(precision)
    return (time.perf_counter() - start) / steps


def matmul_rate(m: int, k: int, n: int, dtype: torch.dtype, repeats: int = 500) -> float:
    """FLOP/s of the best of five means of ``repeats`` (m x k) @ (k x n) products."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(20):
        a @ b
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * m * k * n / best


def main() -> None:
    parser = task_parser(__doc__, "model.hidden=64")
    parser.add_argument("--steps", type=int, default=150, help="steps per turn")
    parser.add_argument("--rounds", type=int, default=6, help="turns of each precision")
    args = parser.parse_args()
    if missing := missing_for(torch.device("cpu"), "bf16"):
        parser.error(missing)
    task_cls = get_task(args.task)
    cfg = task_cls.config(None, args.set)
    task = task_cls(cfg, args.data_dir)
    task.load()
    torch.manual_seed(cfg.train.seed)
    model = task.build_model().train()
    optimizer = build_optimizer(list(model.parameters()), cfg.train)
    batches = task.train_batches()
    epoch = list(batches.epoch(0))
    turn = itertools.cycle(epoch)

    def step(precision: str) -> None:
        with autocast(torch.device("cpu"), precision):
            loss, _ = task.loss(model, next(turn), None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with count_flops() as counted:
        for _ in epoch:
            step("fp32")
    flops = counted["flops"] / len(epoch)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for precision, seconds in times.items():
            seconds.append(time_steps(step, precision, args.steps))
    size = cfg.train.batch_size
    steps = len(batches) * cfg.train.epochs
    print(f"{args.task}, batch {size}: {flops / 1e6:.0f} MFLOP of matmuls a step, on average")
    for precision, seconds in times.items():
        fastest, median = min(seconds), statistics.median(seconds)
        print(
            f"  {precision}: fastest {fastest * 1e3:.2f} ms, median {median * 1e3:.2f} ms a step "
            f"({flops / fastest / 1e9:.0f} GFLOP/s at the fastest); {steps:,} steps "
            f"({cfg.train.epochs} epochs) of the whole step at the fastest: {steps * fastest:.1f} s"
        )
    (f32, b16) = times.values()
    print(
        f"  bf16 against fp32: {min(f32) / min(b16):.2f}x at the fastest, "
        f"{statistics.median(f32) / statistics.median(b16):.2f}x at the median"
    )

    layers = [m for m in model.modules() if isinstance(m, Recurrent)]
    widest = max(layers, key=lambda m: m.input_size + m.hidden_size)
    k, n = widest.input_size + widest.hidden_size, GATES[widest.cell] * widest.hidden_size
    for dtype in (torch.float32, torch.bfloat16):
        rate = matmul_rate(size, k, n, dtype)
        print(
            f"  bare ({size} x {k}) @ ({k} x {n}) in {str(dtype).split('.')[1]}: "
            f"{rate / 1e9:.0f} GFLOP/s; {steps:,} steps ({cfg.train.epochs} epochs) of this "
            f"step's matmuls at that rate: {steps * flops / rate:.0f} s"
        )


if __name__ == "__main__":
    run_main(main)
