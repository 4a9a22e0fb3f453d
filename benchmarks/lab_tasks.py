"""Run lab tasks at their settings and print wall time, time per epoch and the headline metric.

    python benchmarks/lab_tasks.py                                  # every task, lab settings
    python benchmarks/lab_tasks.py --tasks air-quality,sentiment --set train.precision=\"bf16\"
    python benchmarks/lab_tasks.py --best                           # configs/TASK-best.toml
    python benchmarks/lab_tasks.py --json results.json
    python benchmarks/lab_tasks.py --tasks air-quality --repeats 3  # the fastest of three runs
    python benchmarks/lab_tasks.py --tasks air-quality --command    # also the whole command's wall

Each line is comparable to the lab's Keras script run on the same machine (figures from the issues,
measured side by side on a 2-core AMD EPYC): wall seconds from process-level start of the task (data
loading, training, evaluation, writing the run directory) to its end. This shared machine's speed
drifts by ±30 % from minute to minute; ``--repeats N`` runs each task N times and reports the
fastest (every run computes the same thing, so the drift only ever adds time), with all N walls.
That wall leaves out what a user also waits for: starting Python and importing torch, rnnlab and
(at the first optimizer) ``torch._dynamo``. ``--command`` also times the whole ``rnnlab run``
command N times, each in a fresh process, and prints its fastest wall beside the Keras figure.

The roofline columns: ``GFLOP`` counts the recurrent and linear matmuls the run really did (every
call of a ``Recurrent`` or ``nn.Linear``, from its input shape; backward counted as twice the
forward), ``GFLOP/s`` divides it by the wall time, and ``%fp32``/``%bf16`` compare that with a large
``torch.mm`` timed at the start of the same run: the distance to the machine's limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

import rnnlab
from rnnlab.config import CONFIG_DIR
from rnnlab.nn import Recurrent
from rnnlab.runs.pipeline import run
from rnnlab.runs.report import KERAS
from rnnlab.tasks import TASKS, get_task
from rnnlab.training.device import missing_for, resolve_device
from rnnlab.training.distributed import launch
from rnnlab.training.graphs import StepGraphs

GATES = {"lstm": 4, "gru": 3, "rnn": 1}

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


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def matmul_peak(dtype: torch.dtype, device: str, n: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of the best of ``repeats`` (n x n) @ (n x n) products: the machine's dense limit."""
    a = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first one warms up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ a
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _recurrent_flops(module: Recurrent, args: tuple) -> float:
    x = args[0]
    lengths = args[1] if len(args) > 1 and args[1] is not None else None
    steps = float(lengths.sum()) if lengths is not None else x.shape[0] * x.shape[1]
    g, h = GATES[module.cell] * module.hidden_size, module.hidden_size
    total, width = 0.0, module.input_size
    for _ in range(module.layers):
        total += module.directions * 2 * steps * g * (width + h)  # W_ih x_t + W_hh h_{t-1}
        width = h * module.directions
    return total


@contextlib.contextmanager
def count_flops() -> Iterator[dict[str, float]]:
    """Count the matmul FLOPs of every ``Recurrent`` and ``nn.Linear`` call inside the block."""
    counter = {"flops": 0.0}

    def hook(module: nn.Module, args: tuple, _output: object) -> None:
        if isinstance(module, Recurrent):
            flops = _recurrent_flops(module, args)
        elif isinstance(module, nn.Linear):
            flops = 2.0 * args[0].numel() * module.out_features
        else:
            return
        # Backward of a matmul is two matmuls of the same size (input and weight gradients).
        counter["flops"] += flops * (3 if torch.is_grad_enabled() and module.training else 1)

    # A CUDA graph's replay runs no Python, so no hook: each replay adds what its shape's
    # capture (or eager first step) counted.
    per_shape: dict[tuple, float] = {}
    graphed_step = StepGraphs.__call__

    def counted_step(graphs: StepGraphs, batch: dict) -> torch.Tensor:
        before, replays = counter["flops"], graphs.replays
        loss = graphed_step(graphs, batch)
        shape = StepGraphs.shape_of(batch)
        if graphs.replays > replays and counter["flops"] == before:
            counter["flops"] += per_shape[shape]
        else:
            per_shape[shape] = counter["flops"] - before
        return loss

    handle = nn.modules.module.register_module_forward_hook(hook)
    StepGraphs.__call__ = counted_step
    try:
        yield counter
    finally:
        handle.remove()
        StepGraphs.__call__ = graphed_step


@contextlib.contextmanager
def peak_memory(device: str) -> Iterator[dict[str, float]]:
    """Peak resident memory (CPU, sampled every 20 ms) or peak allocated memory (CUDA), in MB."""
    result = {"mb": 0.0}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        yield result
        result["mb"] = torch.cuda.max_memory_allocated() / 2**20
        return
    statm = Path("/proc/self/statm")
    if not statm.exists():  # not Linux: the process's lifetime peak (bytes on macOS), coarser
        yield result
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result["mb"] = peak / 2**20 if sys.platform == "darwin" else peak / 2**10
        return
    page = resource.getpagesize()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            resident = int(statm.read_text().split()[1])
            result["mb"] = max(result["mb"], resident * page / 2**20)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        done.set()
        thread.join()


def measure(task_cls: type, cfg, out: Path, device: str, data_dir: Path | None) -> dict:
    """Run one task in this process: wall seconds, counted FLOP, peak memory, its metrics.

    Under ``--procs`` every process measures its own share; rank 0's run directory has the
    metrics (the others read them once the run is over and everyone has met at its end).
    """
    memory_device = "cuda" if resolve_device(device).type == "cuda" else "cpu"
    with count_flops() as flops, peak_memory(memory_device) as memory:
        start = time.perf_counter()
        run_dir = run(task_cls, cfg, out, device, True, data_dir)
        wall = time.perf_counter() - start
    return {
        "wall": wall,
        "flops": flops["flops"],
        "mb": memory["mb"],
        "metrics": json.loads((run_dir / "metrics.json").read_text()),
    }


def command_wall(
    task: str,
    config: Path | None,
    overrides: list[str],
    device: str,
    data_dir: Path | None,
    procs: int,
) -> float:
    """Seconds of the whole ``rnnlab run`` command in a fresh process, as a user waits for it."""
    with tempfile.TemporaryDirectory() as out:
        args = [sys.executable, "-m", "rnnlab", "run", task, "--quiet", "--device", device]
        args += ["--out", str(Path(out) / task), "--procs", str(procs)]
        args += ["--config", str(config)] if config else []
        args += [a for s in overrides for a in ("--set", s)]
        args += ["--data-dir", str(data_dir)] if data_dir else []
        start = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)  # its "run directory: …"
        return time.perf_counter() - start


def bench(
    task: str,
    overrides: list[str],
    best: bool,
    device: str,
    data_dir: Path | None,
    peaks: dict[str, float | None],
    procs: int = 1,
    repeats: int = 1,
    command: bool = False,
) -> dict:
    name = task
    task, extra = VARIANTS.get(name, (name, []))
    if not best:  # a best config sets its own mode
        overrides = extra + overrides
    task_cls = get_task(task)
    config = CONFIG_DIR / f"{task}-best.toml" if best else None
    if config is not None and not config.exists():
        raise SystemExit(f"no best config for {task}: {config}")
    cfg = task_cls.config(config, overrides)
    results = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            if procs == 1:
                results.append(measure(task_cls, cfg, Path(out) / task, device, data_dir))
            else:
                results.append(
                    measure_processes(name, overrides, best, device, data_dir, procs, Path(out))
                )
    commands = [
        command_wall(task, config, overrides, device, data_dir, procs)
        for _ in range(repeats if command else 0)
    ]
    # The fastest run: a shared machine only ever adds time (every run computes the same thing).
    result = min(results, key=lambda r: r["wall"])
    wall, metrics = result["wall"], result["metrics"]
    ref = KERAS.get(task)  # the lab's Keras figures (a variant compares with its task's)
    key, keras_wall, keras_metric = (
        (ref.metric, ref.keras_seconds, ref.keras) if ref else ("", float("nan"), float("nan"))
    )
    rate = result["flops"] / wall
    return {
        "task": name,
        "config": str(config) if config else "lab",
        "processes": procs,
        "precision": metrics["precision"],  # as trained: fp32 on a CPU without bf16 instructions
        "wall_s": round(wall, 2),
        "wall_s_runs": [round(r["wall"], 2) for r in results],
        "train_s": metrics["train_seconds"],
        "epochs": metrics["epochs"],
        "s_per_epoch": round(metrics["train_seconds"] / metrics["epochs"], 3),
        "samples_per_s": round(
            metrics["train_examples"] * metrics["epochs"] / metrics["train_seconds"]
        ),
        "peak_memory_mb": round(result["mb"]),
        "gflop": round(result["flops"] / 1e9, 1),
        "gflop_per_s": round(rate / 1e9, 1),
        "fraction_of_fp32_peak": round(rate / peaks["fp32"], 3),
        "fraction_of_bf16_peak": round(rate / peaks["bf16"], 3) if peaks["bf16"] else None,
        "metric": key,
        "value": metrics.get(key),
        "keras_wall_s": keras_wall,
        "keras_value": keras_metric,
        "speedup_vs_keras": round(keras_wall / wall, 2),
        "command_wall_s": round(min(commands), 2) if commands else None,
        "command_wall_s_runs": [round(c, 2) for c in commands],
        "command_speedup_vs_keras": round(keras_wall / min(commands), 2) if commands else None,
        "metrics": metrics,
    }


def measure_processes(
    name: str,
    overrides: list[str],
    best: bool,
    device: str,
    data_dir: Path | None,
    procs: int,
    out: Path,
) -> dict:
    """Run one task in ``procs`` data-parallel processes, as ``rnnlab run --procs`` does.

    The wall time is this process's, around the launch: it includes starting the processes,
    their imports and their meeting, which one process does not pay. FLOP and memory are the
    sums over the processes (each counts its own); the metrics are rank 0's.
    """
    args = [__file__, "--worker", str(out), "--tasks", name, "--device", device]
    args += [f"--set={s}" for s in overrides] + ["--best"] * best
    args += ["--data-dir", str(data_dir)] if data_dir else []
    start = time.perf_counter()
    launch(procs, args, str(resolve_device(device)))
    wall = time.perf_counter() - start
    parts = [json.loads((out / f"rank{r}.json").read_text()) for r in range(procs)]
    return {
        "wall": wall,
        "flops": sum(p["flops"] for p in parts),
        "mb": sum(p["mb"] for p in parts),
        "metrics": parts[0]["metrics"],
    }


def worker(args: argparse.Namespace) -> None:
    """One process of :func:`measure_processes`: measure its share, leave it in a file."""
    name = args.tasks
    task, extra = VARIANTS.get(name, (name, []))
    overrides = args.set if args.best else extra + args.set
    task_cls = get_task(task)
    config = CONFIG_DIR / f"{task}-best.toml" if args.best else None
    cfg = task_cls.config(config, overrides)
    result = measure(task_cls, cfg, args.worker / "run", args.device, args.data_dir)
    (args.worker / f"rank{os.environ['RANK']}.json").write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    lab = [name for name in TASKS if name in KERAS]  # not seq2seq: it needs the user's pairs
    parser.add_argument(
        "--tasks", default=",".join([*lab, *VARIANTS]), help="comma-separated task names"
    )
    parser.add_argument("--set", action="append", default=[], help="override, e.g. train.epochs=5")
    parser.add_argument("--best", action="store_true", help="use configs/TASK-best.toml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--procs", type=int, default=1, help="data-parallel processes per task (rnnlab --procs)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per task; the fastest is reported"
    )
    parser.add_argument(
        "--command",
        action="store_true",
        help="also time the whole `rnnlab run` command, once per repeat, each in a fresh process",
    )
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args)
        return

    header = {
        "rnnlab": rnnlab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the widest vector ISA torch uses
        "processes": args.procs,
        "threads": torch.get_num_threads() if args.procs == 1 else None,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    device = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    # Without bf16 instructions a 4096² bf16 product takes minutes, and training falls back to fp32.
    bf16 = missing_for(torch.device(device), "bf16") is None
    peaks = {
        "device": device,
        "fp32": matmul_peak(torch.float32, device),
        "bf16": matmul_peak(torch.bfloat16, device) if bf16 else None,
    }
    header["matmul_gflop_per_s_fp32"] = round(peaks["fp32"] / 1e9, 1)
    header["matmul_gflop_per_s_bf16"] = round(peaks["bf16"] / 1e9, 1) if bf16 else None
    print(" ".join(f"{k}={v}" for k, v in header.items()), file=sys.stderr)
    rows = []
    print(
        f"{'task':<24}{'prec':>5}{'wall s':>8}{'s/epoch':>9}{'ep':>4}{'samples/s':>10}{'MB':>6}"
        f"{'GFLOP':>8}{'GFLOP/s':>8}{'%fp32':>6}{'%bf16':>6}  {'metric':<16}{'value':>7}"
        f"{'keras s':>8}{'keras':>7}{'speedup':>8}"
    )
    for task in args.tasks.split(","):
        row = bench(
            task,
            args.set,
            args.best,
            args.device,
            args.data_dir,
            peaks,
            args.procs,
            args.repeats,
            args.command,
        )
        rows.append(row)
        value = row["value"] if row["value"] is not None else float("nan")
        print(
            f"{task:<24}{row['precision']:>5}{row['wall_s']:>8.1f}{row['s_per_epoch']:>9.3f}{row['epochs']:>4}"
            f"{row['samples_per_s']:>10}{row['peak_memory_mb']:>6}{row['gflop']:>8.0f}"
            f"{row['gflop_per_s']:>8.1f}{100 * row['fraction_of_fp32_peak']:>6.0f}"
            f"{100 * (row['fraction_of_bf16_peak'] or float('nan')):>6.0f}"
            f"  {row['metric']:<16}{value:>7.4f}"
            f"{row['keras_wall_s']:>8.1f}{row['keras_value']:>7.3f}"
            f"{row['speedup_vs_keras']:>7.1f}x"
            + (f"  runs: {' '.join(map(str, row['wall_s_runs']))}" if args.repeats > 1 else "")
            + (
                f"  command: {row['command_wall_s']:.1f} s"
                f" ({row['command_speedup_vs_keras']:.1f}x; runs:"
                f" {' '.join(map(str, row['command_wall_s_runs']))})"
                if args.command
                else ""
            ),
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
