"""Process-wide settings that make CPU training fast, and what this CPU can run fast.

glibc's ``malloc`` hands every block above 128 kB back to the kernel when it is freed. A training
step on the CPU frees and allocates the same large buffers every time (the LSTM's saved gates:
~100 MB a step for ElectricDevices), so each step page-faults its memory in afresh; measured on
the lab's shapes, that is about half of the step time. Raising glibc's mmap and trim thresholds
keeps freed memory in the process for the next step, the job a caching allocator does on a GPU.

Half precision is fast on a CPU only where it has the instructions for it (AVX-512-BF16 or AMX for
bf16, AVX-512-FP16 or AMX-FP16 for fp16). Elsewhere a bf16 matmul runs about 150x slower than an
fp32 one (0.95 against 148 GFLOP/s for 1024² on an AVX2 EPYC: benchmarks/RESULTS.md, session 10),
and oneDNN refuses to build an LSTM in that type at all.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

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
