"""Milliseconds per training step of a plain PyTorch loop: one process, or several side by side.

    python benchmarks/plain_loop.py                                  # ElectricDevices' step, fp32
    python benchmarks/plain_loop.py --precision bf16 --procs 2       # two processes, half each
    python benchmarks/plain_loop.py --cell lstm --input 1 --hidden 32 --layers 1 --steps 6 \\
        --batch 500 --outputs 1 --optimizer adam                     # air quality's step

The loop is what a user would write by hand (``nn.LSTM``/``nn.GRU``/``nn.RNN``, a linear head on
the last step, cross-entropy or MSE, the optimizer), with no rnnlab code in it but the allocator
setting the trainer makes too (``rnnlab.runtime``; ``--glibc-default`` leaves it out): the floor
the trainer is measured against.
``--procs P`` starts P copies at once, each with 1/P of the threads and of the batch, and
reports the slowest: the time of one global batch when P data-parallel processes share the
machine (the gradient exchange left out).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
from torch import nn

from rnnlab import runtime
from rnnlab.training.device import missing_for


def step_ms(args: argparse.Namespace) -> float:
    """Best of ``--repeats`` means of ``--steps-timed`` training steps, in milliseconds."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if not args.glibc_default:
        runtime.keep_freed_memory()
    rnn = getattr(nn, args.cell.upper())(args.input, args.hidden, args.layers, batch_first=True)
    head = nn.Linear(args.hidden, args.outputs)
    params = [*rnn.parameters(), *head.parameters()]
    if args.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=1e-3)
    else:
        optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.95)
    x = torch.randn(args.batch, args.steps, args.input)
    if args.outputs > 1:
        y = torch.randint(0, args.outputs, (args.batch,))
        loss_fn = nn.functional.cross_entropy
    else:
        y = torch.randn(args.batch, 1)
        loss_fn = nn.functional.mse_loss
    bf16 = args.precision == "bf16"

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, _ = rnn(x)
            loss = loss_fn(head(out[:, -1]).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: allocations, oneDNN's kernels, the optimizer's first step
        step()
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps_timed):
            step()
        best = min(best, (time.perf_counter() - start) / args.steps_timed)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
    parser.add_argument("--input", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=96, help="time steps per sequence")
    parser.add_argument("--batch", type=int, default=1000, help="the global batch")
    parser.add_argument("--outputs", type=int, default=7, help="classes (1: regression, MSE)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--procs", type=int, default=1, help="processes side by side")
    parser.add_argument(
        "--glibc-default", action="store_true", help="without rnnlab.runtime's allocator setting"
    )
    parser.add_argument("--steps-timed", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    missing = missing_for(torch.device("cpu"), args.precision)
    if missing:
        parser.error(f"--precision {args.precision}: {missing}")
    shape = (
        f"{args.cell} {args.input}->{args.hidden} x{args.layers}, {args.steps} steps, "
        f"batch {args.batch}, {args.precision}"
    )
    if args.procs == 1:
        print(f"{shape}: 1 process, {args.threads} threads: {step_ms(args):.1f} ms/step")
        return
    # The copies: the same command, one process's share of the threads and of the batch.
    share = [
        f"--threads={max(1, args.threads // args.procs)}",
        f"--batch={args.batch // args.procs}",
        "--procs=1",
    ]
    copies = [
        subprocess.Popen(
            [sys.executable, __file__, *sys.argv[1:], *share], stdout=subprocess.PIPE, text=True
        )
        for _ in range(args.procs)
    ]
    outputs = [copy.communicate()[0] for copy in copies]
    if any(copy.returncode for copy in copies):
        raise SystemExit("a copy failed")
    slowest = max(float(out.rsplit(":", 1)[1].split()[0]) for out in outputs)
    print(
        f"{shape}: {args.procs} processes side by side, {share[0].split('=')[1]} thread(s) and "
        f"batch {args.batch // args.procs} each: {slowest:.1f} ms per global step"
    )


if __name__ == "__main__":
    main()
