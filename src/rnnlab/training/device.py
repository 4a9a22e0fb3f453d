"""Where training runs and in what precision: the device, and mixed precision where it pays."""

from __future__ import annotations

import contextlib

import torch

from rnnlab import runtime
from rnnlab.errors import RnnlabError

HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(
    device: torch.device, precision: str, cache: bool = True
) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: matmuls in bf16/fp16, the rest (and losses) in fp32.

    On CPUs with AVX-512-BF16 and on GPUs, bf16 roughly doubles the matmul rate; tasks compute
    their losses on ``.float()`` outputs so the reduction stays in fp32. ``cache=False`` casts
    the weights afresh at every use, which a CUDA graph capture requires.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=HALF[precision], cache_enabled=cache)


def resolve_precision(device: torch.device, precision: str) -> str:
    """``"auto"``: bf16 on a CPU with bf16 instructions, fp32 anywhere else; others as they are.

    Where a CPU has them, oneDNN's bf16 LSTM is the faster one at wide shapes (``python
    benchmarks/step_precision.py`` measures both). On a GPU these small recurrent nets wait on
    kernel launches, not on arithmetic: half precision buys nothing.
    """
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and missing_for(device, "bf16") is None else "fp32"


def missing_for(device: torch.device, precision: str) -> str | None:
    """What ``device`` lacks to train in ``precision``, or None if nothing.

    A CPU without bf16 (fp16) instructions emulates half-precision matmuls, far slower than fp32,
    and builds no half-precision LSTM at all; a GPU older than Ampere has no bf16 units.
    """
    if precision == "fp32":
        return None
    if device.type == "cpu" and not runtime.cpu_runs(HALF[precision]):
        needs = "AVX-512-BF16 or AMX" if precision == "bf16" else "AVX-512-FP16 or AMX-FP16"
        return f"this CPU has no {precision} instructions ({needs})"
    if device.type == "cuda" and precision == "bf16":
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            return (
                f"this GPU (compute capability {major}.{minor}) has no bf16 units (8.0 and newer "
                "have them); 'fp16' uses its tensor cores"
            )
    return None


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise RnnlabError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RnnlabError(f"--device {device}: no CUDA device is available on this machine")
    return torch.device(device)
