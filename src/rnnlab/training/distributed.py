"""Data-parallel training on PyTorch's own engine: ``torchrun --nproc_per_node N -m rnnlab run``.

``rnnlab run --procs N`` starts the same N processes itself (:func:`launch`: torch's elastic
launcher, the engine behind torchrun). Either launcher tells each process its ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``. Every process builds the same model from the same seed and
walks the same sequence of global batches; each trains on its own slice of every batch (rows
``rank::world``), and ``DistributedDataParallel`` averages the gradients, so a step sees the whole
global batch, as a single process would. Only rank 0 writes the run directory.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rnnlab.errors import RnnlabError

Batch = dict[str, Tensor]
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """The process that writes files and shows progress."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> tuple[World, torch.device]:
        """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA), if there is one.

        Returns the world and this process's device (its own GPU under CUDA).
        """
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls(), device
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            atexit.register(dist.destroy_process_group)
        return cls(dist.get_rank(), dist.get_world_size()), device

    def shard(self, batch: Batch) -> tuple[Batch, int]:
        """This process's rows of a global batch (``rank``, ``rank + size``, ...) and their count.

        A batch with fewer rows than processes leaves some processes none; they still have to
        join the gradient exchange, so they get row 0 as a stand-in and a count of 0, which the
        trainer turns into a loss weight of 0.
        """
        if self.size == 1:
            return batch, len(next(iter(batch.values())))
        part = {name: t[self.rank :: self.size] for name, t in batch.items()}
        rows = len(next(iter(part.values())))
        if rows == 0:
            part = {name: t[:1] for name, t in batch.items()}
        return part, rows

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: ``model`` itself, or a DistributedDataParallel around it."""
        if self.size == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, values: Tensor) -> Tensor:
        """``values`` summed over every process (a no-op for one process)."""
        if self.size > 1:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value``, on every process."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextlib.contextmanager
    def all_cores(self) -> Iterator[None]:
        """On rank 0, while the other processes wait: its threads times the processes here, so
        work that only rank 0 does (validation, the final report) uses the cores they free."""
        if self.size == 1 or not self.is_main:
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(threads * int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` computed by rank 0 alone, with :meth:`all_cores`, and given to every process."""
        if self.size == 1:
            return fn()
        if not self.is_main:
            return self.broadcast(cast(T, None))  # rank 0's value replaces it
        with self.all_cores():
            return self.broadcast(fn())

    def done(self) -> None:
        """Wait for every process (rank 0 writes the run directory last). The process group stays
        for the next run of a series; it is left when the process exits."""
        if self.size > 1:
            dist.barrier()


def is_main_process() -> bool:
    """Whether this process is rank 0 of torchrun's processes (or runs alone)."""
    return int(os.environ.get("RANK", "0")) == 0


_LAUNCHED = "RNNLAB_LAUNCHED"  # set for the processes of :func:`launch`, which reports for them


def prints_own_errors() -> bool:
    """Whether this process should print its error itself: rank 0 alone or under torchrun; never
    under rnnlab's launcher, which prints the one line for all its processes."""
    return is_main_process() and _LAUNCHED not in os.environ


class ProcessError(RnnlabError):
    """A training process's own error, raised again by the launcher with that process's code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def launch(procs: int, args: Sequence[str], device: str = "cpu") -> None:
    """Run ``python ARGS`` (e.g. ``-m rnnlab run TASK``) in ``procs`` processes, as torchrun would.

    On the CPU the cores are split between the processes (``OMP_NUM_THREADS``, unless set): the
    small matmuls of a recurrent step use one core well and two poorly, so N processes of
    1/N-th of the batch each can beat one process on all cores. On CUDA each process takes a GPU.
    The processes leave their errors (:func:`report_failure`) and print nothing; this raises
    one line for them: rank 0's own message when it has one (whichever process failed first,
    they usually fail alike), else the first failed rank's, named. A process that crashed with
    no message (a traceback, which it printed) exits with its code, or is named with it.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if procs < 1:
        raise RnnlabError(f"--procs must be >= 1, got {procs}")
    if device == "cuda" and procs > torch.cuda.device_count():
        raise RnnlabError(
            f"--procs {procs} on cuda needs {procs} GPUs; this machine has "
            f"{torch.cuda.device_count()}"
        )
    threads = os.environ.get("OMP_NUM_THREADS")  # the processes inherit the environment
    if device != "cuda" and threads is None:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // procs))
    os.environ[_LAUNCHED] = "1"
    # The launcher keeps the processes' error files in a folder: ours, removed after.
    with tempfile.TemporaryDirectory(prefix="rnnlab-launch-") as logs:
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=procs,
            run_id=uuid.uuid4().hex,
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",  # a free port on loopback: torchrun --standalone
            max_restarts=0,
            logs_specs=DefaultLogsSpecs(log_dir=logs),
        )
        logging.disable(logging.ERROR)  # the launcher's own log: its warnings, its failure report
        try:
            elastic_launch(config, entrypoint=sys.executable)(*args)
        except SignalException as e:
            # Ctrl-C reached the launcher and its processes alike: they saved a checkpoint and
            # left their one line (rank 0's names the run to resume), which stands for them all.
            messages = [
                json.loads(f.read_text()).get("message")
                for f in sorted(Path(logs).rglob("error.json"), key=lambda f: f.parent.name)
            ]
            messages = [m for m in messages if m]
            raise ProcessError(
                messages[0] if messages else f"stopped by {e.sigval.name}", 128 + e.sigval
            ) from None
        except ChildFailedError as e:
            failures = e.failures
            said = {
                rank: failure.error_file_data["message"]
                for rank, failure in failures.items()
                if failure.error_file_data.get("rnnlab")
            }
            if said:
                # Rank 0 may have left its message and then been stopped by the launcher (a
                # signal) because another process failed a moment before it: its message counts.
                rank = 0 if 0 in said else min(said, key=lambda r: failures[r].timestamp)
                code = failures[rank].exitcode
                where = "" if rank == 0 else f"training process {rank} of {procs} failed: "
                raise ProcessError(where + said[rank], code if code > 0 else 2) from None
            # No message: a crash, whose traceback is in the output. A negative code is the
            # launcher's signal to the others, not the cause.
            failed = {r: f for r, f in failures.items() if f.exitcode > 0} or failures
            if 0 in failed:
                raise SystemExit(failed[0].exitcode) from None
            rank = min(failed, key=lambda r: failed[r].timestamp)
            raise RnnlabError(
                f"training process {rank} of {procs} failed with exit code {failed[rank].exitcode}"
            ) from None
        finally:
            logging.disable(logging.NOTSET)
            os.environ.pop(_LAUNCHED, None)
            if threads is None:
                os.environ.pop("OMP_NUM_THREADS", None)


def relaunch(procs: int, device: str = "cpu") -> None:
    """Run this very ``rnnlab`` command line again in ``procs`` processes, less its ``--procs``."""
    args, rest = [], iter(sys.argv[1:])
    for arg in rest:
        if arg == "--procs":
            next(rest, None)
        elif not arg.startswith("--procs="):
            args.append(arg)
    launch(procs, ["-m", "rnnlab", *args], device)


def report_failure(message: str) -> None:
    """Leave ``message`` where torch's launcher looks for a process's failure (if it set a file)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        Path(path).write_text(
            json.dumps({"message": message, "timestamp": int(time.time()), "rnnlab": True})
        )
