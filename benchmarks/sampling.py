"""Characters per second when sampling: rnnlab's carried state against the lab's window re-read.

    python benchmarks/sampling.py [--chars 1000] [--hidden 64]

Both use the same LSTM (the lab's one-hot input, 38 characters, untrained weights: speed does not
depend on them). The lab's way re-runs the whole 50-character window for every new character;
``rnnlab.tasks.sampling`` reads the prime once and then takes one cell step per character.
"""

from __future__ import annotations

import argparse
import string
import time

import torch

from rnnlab.data.text import CharVocab
from rnnlab.nn import CharLM
from rnnlab.tasks.sampling import generate


def window_rereading(model: CharLM, window: torch.Tensor, chars: int) -> float:
    """The lab's loop: predict from the last 50 characters, append, slide, repeat."""
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(chars):
            logits, _ = model(window, last_only=True)  # (1, V): 50 cell steps per character
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=g)
            window = torch.cat([window[:, 1:], nxt], dim=1)
    return chars / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    vocab = CharVocab.of(string.ascii_lowercase + " \n.,;:!?'-()")
    torch.manual_seed(0)
    model = CharLM(len(vocab), hidden=args.hidden).eval()
    window = torch.randint(len(vocab), (1, 50))
    lab = window_rereading(model, window, args.chars)
    start = time.perf_counter()
    generate(model, vocab, temperatures=(1.0,), length=args.chars, seed=0)
    ours = args.chars / (time.perf_counter() - start)
    start = time.perf_counter()
    texts = generate(model, vocab, temperatures=(0.2, 0.4, 0.8, 1.0), length=400, seed=0)
    round_s = time.perf_counter() - start
    print(f"characters: {args.chars}, LSTM {args.hidden}, threads {torch.get_num_threads()}")
    print(
        f"one round of the lab's four temperatures, 400 characters each: {round_s:.3f} s "
        f"({sum(len(t.text) for t in texts)} characters; the lab's Keras script: about 110 s)"
    )
    print(f"window re-read (the lab's way): {lab:10,.0f} chars/s")
    print(f"carried state (rnnlab.tasks.sampling): {ours:10,.0f} chars/s   ({ours / lab:.1f}x)")


if __name__ == "__main__":
    main()
