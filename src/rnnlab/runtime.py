"""Process-wide settings that make CPU training fast, and what this CPU can run fast.

glibc's ``malloc`` hands every block above 128 kB back to the kernel when it is freed. A training
step on the CPU frees and allocates the same large buffers every time (the LSTM's saved gates),
so each step would page-fault its memory in afresh, a large share of a step on the lab's shapes.
Raising glibc's mmap and trim thresholds keeps freed memory in the process for the next step, the
job a caching allocator does on a GPU.

Half precision is fast on a CPU only where it has the instructions for it (AVX-512-BF16 or AMX for
bf16, AVX-512-FP16 or AMX-FP16 for fp16). Elsewhere a bf16 matmul is emulated, orders of
magnitude slower than an fp32 one, and oneDNN refuses to build an LSTM in that type at all.

What this process may use of the machine (its CPUs, the memory free) is read here too, so that a
run picks its threads and refuses a model too large before it starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap, and up to 1 GiB free stays there


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse; returns False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, TypeError, AttributeError):  # not glibc (macOS, Windows, musl)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES) and mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


@functools.cache
def cpu_runs(dtype: torch.dtype) -> bool:
    """Whether this CPU has the instructions to run ``dtype`` (bf16 or fp16) fast.

    Asked the way training would find out: oneDNN builds an LSTM under autocast in ``dtype``
    only where the CPU has them, and raises otherwise. The probe's weights are drawn from a
    forked generator, so asking leaves a seeded run's random numbers as they were.
    """
    with torch.random.fork_rng(devices=[]):
        lstm = torch.nn.LSTM(1, 1)
    try:
        with torch.autocast("cpu", dtype=dtype):
            lstm(torch.zeros(1, 1, 1))
    except RuntimeError:
        return False
    return True


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a container's CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks (macOS, Windows)
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(count, quota)) if quota is not None else count


def _cgroup_quota() -> int | None:
    """CPUs allowed by a cgroup's quota (Docker's ``--cpus``), rounded up; None if unlimited."""
    try:  # cgroup v2: "max 100000", or "QUOTA PERIOD"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:  # cgroup v1
            quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(busy, total) jiffies of ``cpus`` from ``/proc/stat``; None where there is none."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        values = [float(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        busy += sum(values) - values[3] - values[4]
        total += sum(values)
    return busy, total


def busy_cpus(seconds: float = 0.1) -> float:
    """How many of this process's CPUs other work keeps busy, measured over ``seconds``.

    Sampled from ``/proc/stat`` while this process sleeps, so its own work does not count; where
    there is no ``/proc`` (macOS), the load average stands in.
    """
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        cpus = set(range(os.cpu_count() or 1))
    before = _cpu_times(cpus)
    if before is None:
        try:
            return min(float(len(cpus)), os.getloadavg()[0])
        except OSError:
            return 0.0
    time.sleep(seconds)
    after = _cpu_times(cpus)
    if after is None or after[1] <= before[1]:
        return 0.0
    return len(cpus) * (after[0] - before[0]) / (after[1] - before[1])


@dataclass(frozen=True)
class Threads:
    """How many threads a CPU run uses, and why."""

    count: int
    usable: int  # CPUs this process may use
    busy: float  # of those, how many other work kept busy when the count was chosen
    chosen: str  # "auto", "config" (train.threads) or "resumed" (the interrupted run's count)

    def describe(self) -> str:
        """The choice in a few words, for a run's first line."""
        words = f"{self.count} thread{'s' * (self.count != 1)}"
        if self.chosen == "auto" and self.count < self.usable:
            return f"{words} ({self.busy:.1f} of {self.usable} CPUs busy)"
        return words if self.chosen == "auto" else f"{words} ({self.chosen})"


def choose_threads(configured: int | None = None, resumed: int | None = None) -> Threads:
    """Threads for CPU training: ``configured`` (``train.threads``) if set, else a resumed run's
    own count (so it computes as it did), else the CPUs this process may use minus those other
    work keeps busy, at least one.

    A CPU training step is a chain of small parallel kernels that each wait for their slowest
    thread: a thread that shares its core with another busy process slows every kernel, so on a
    busy machine fewer threads run faster.
    """
    usable = usable_cpus()
    if configured is not None:
        return Threads(configured, usable, 0.0, "train.threads")
    if resumed is not None:
        return Threads(resumed, usable, 0.0, "as before the interruption")
    busy = busy_cpus()
    return Threads(max(1, min(usable, round(usable - busy))), usable, busy, "auto")


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a model and its training on ``device``; None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gigabytes(n: float) -> str:
    """``n`` bytes for a message: ``"14.4 GB"``."""
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
