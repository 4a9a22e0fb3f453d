"""Forward + backward milliseconds of each cell on the fused and the reference engine.

    python benchmarks/engines.py [--batch 128] [--steps 50] [--input 32] [--hidden 128] [--json F]

Both engines read the same parameters (see ``rnnlab.nn.recurrent``); the lecture GRU and variational
recurrent dropout have no fused kernel, so they have a reference row only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rnnlab import runtime
from rnnlab.nn import Recurrent

CELLS = {  # row name -> Recurrent keyword arguments
    "rnn (tanh)": {"cell": "rnn"},
    "lstm": {"cell": "lstm"},
    "gru (cudnn)": {"cell": "gru", "gru_variant": "cudnn"},
    "gru (lecture)": {"cell": "gru", "gru_variant": "lecture"},
    "lstm, recurrent dropout 0.2": {"cell": "lstm", "recurrent_dropout": 0.2},
}


def step_ms(layer: Recurrent, x: torch.Tensor, repeats: int) -> float:
    """Best-of-three mean milliseconds of one forward and backward pass."""
    layer(x)[0].sum().backward()  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            layer(x)[0].sum().backward()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--input", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runtime.keep_freed_memory()
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.steps, args.input)
    print(
        f"batch {args.batch}, {args.steps} steps, input {args.input}, hidden {args.hidden}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'cell':<30}{'fused ms':>10}{'reference ms':>14}{'ratio':>8}")
    rows = []
    for name, kwargs in CELLS.items():
        times = {}
        for engine in ("fused", "reference"):
            try:
                layer = Recurrent(args.input, args.hidden, engine=engine, **kwargs)
            except ValueError:  # no fused kernel computes this cell
                continue
            times[engine] = step_ms(layer.train(), x, args.repeats)
        fused, ref = times.get("fused"), times["reference"]
        ratio = f"{ref / fused:>7.1f}x" if fused else f"{'':>8}"
        shown = f"{fused:>10.2f}" if fused else f"{'—':>10}"
        print(f"{name:<30}{shown}{ref:>14.2f}{ratio}")
        rows.append({"cell": name, "fused_ms": fused, "reference_ms": ref})
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
