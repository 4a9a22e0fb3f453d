"""The UCR panel: rnnlab's settings for a user's own series against the majority class and a peer.

    python benchmarks/panel.py --data-dir ../shared/data/ucr-panel               # defaults, 3 seeds
    python benchmarks/panel.py --seeds 5 --json panel.json                        # and keep the figures
    python benchmarks/panel.py --variant "lstm:model.cell='lstm'" --no-peer       # a variant beside them
    python benchmarks/panel.py --lab                                              # the lab's config too
    python benchmarks/panel.py --datasets CBF,Computers --seeds 1

For every dataset of the panel (``NAME_TRAIN.tsv`` / ``NAME_TEST.tsv`` in ``--data-dir``) it trains
``rnnlab run series-classification`` with its defaults (and each ``--variant NAME:K=V,K=V``) for
several seeds, and scores on the same test split, in the same process: the majority class (the
training set's most frequent class); with ``--lab``, ``rnnlab run electric-devices`` at the lab's
settings on the dataset's files; and MiniRocket (Dempster et al. 2021), what a time-series
practitioner reaches for first, from aeon (``pip install 'rnnlab[peers]'``; ``--no-peer`` skips it).
Wall times are each model's fit and test. The table prints mean ± std of test accuracy over the
seeds; ``--json`` keeps every run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnlab.data.ucr import read_ucr
from rnnlab.files import write_json
from rnnlab.runs.pipeline import run
from rnnlab.tasks import get_task

PANEL = (
    "CBF",
    "ECG200",
    "ECGFiveDays",
    "Computers",
    "DistalPhalanxOutlineCorrect",
    "FreezerRegularTrain",
    "FiftyWords",
    "CricketX",
)


def rnnlab_run(task: str, sets: list[str], seed: int) -> dict:
    """One rnnlab run in this process: its test accuracy and the wall of fit and test."""
    cls = get_task(task)
    cfg = cls.config(None, [*sets, f"train.seed={seed}"])
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        out = run(cls, cfg, Path(tmp) / "run", "cpu", quiet=True)
        wall = time.perf_counter() - started
        metrics = json.loads((out / "metrics.json").read_text())
    return {
        "seed": seed,
        "accuracy": metrics["test_accuracy"],
        "majority": metrics["majority_accuracy"],
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "wall": round(wall, 2),
    }


def minirocket(train: Path, test: Path, seed: int) -> dict:
    """MiniRocket's test accuracy on the same files, and the wall of its fit and test, in a
    child process: numba's worker threads stay out of the process that trains rnnlab."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_minirocket, train, test, seed).result()


def _minirocket(train: Path, test: Path, seed: int) -> dict:
    from aeon.classification.convolution_based import MiniRocketClassifier

    y_train, x_train = read_ucr(train)
    y_test, x_test = read_ucr(test)
    started = time.perf_counter()
    model = MiniRocketClassifier(random_state=seed)
    model.fit(x_train[:, None, :], y_train)
    accuracy = float(np.mean(model.predict(x_test[:, None, :]) == y_test))
    return {"seed": seed, "accuracy": accuracy, "wall": round(time.perf_counter() - started, 2)}


def summary(runs: list[dict]) -> str:
    acc = [r["accuracy"] for r in runs]
    spread = statistics.stdev(acc) if len(acc) > 1 else 0.0
    wall = statistics.mean(r["wall"] for r in runs)
    return f"{statistics.mean(acc):.3f} ± {spread:.3f} ({wall:.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/ucr-panel"))
    parser.add_argument("--datasets", default=",".join(PANEL))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[], help="NAME:K=V,K=V")
    parser.add_argument("--no-defaults", action="store_true", help="only the variants")
    parser.add_argument("--lab", action="store_true", help="also the lab's ElectricDevices config")
    parser.add_argument("--no-peer", action="store_true", help="skip MiniRocket")
    parser.add_argument("--json", type=Path, default=None, help="keep every run's figures here")
    parser.add_argument("--table", type=Path, default=None, help="print a --json file's table")
    args = parser.parse_args()
    if args.table is not None:
        table(args.table)
        return
    models: dict[str, tuple[str, list[str]]] = {}
    if not args.no_defaults:
        models["rnnlab"] = ("series-classification", [])
    for spec in args.variant:
        name, _, sets = spec.partition(":")
        models[name] = ("series-classification", [s for s in sets.split(",") if s])
    if args.lab:
        models["lab config"] = ("electric-devices", [])
    if not args.no_peer:
        try:
            import aeon  # noqa: F401
        except ImportError:
            sys.exit("error: MiniRocket needs aeon: pip install 'rnnlab[peers]' (or --no-peer)")
    results: dict[str, dict] = {}
    names = [*models, *([] if args.no_peer else ["MiniRocket"])]
    print(header(names), flush=True)
    for dataset in args.datasets.split(","):
        train = args.data_dir / f"{dataset}_TRAIN.tsv"
        test = args.data_dir / f"{dataset}_TEST.tsv"
        files = [f"data.train='{train}'", f"data.test='{test}'"]
        found: dict[str, list[dict]] = {}
        for name, (task, sets) in models.items():
            found[name] = [rnnlab_run(task, files + sets, s) for s in range(args.seeds)]
        if not args.no_peer:
            found["MiniRocket"] = [minirocket(train, test, s) for s in range(args.seeds)]
        results[dataset] = {"majority": majority(train, test), "models": found}
        print(row(dataset, results[dataset], names), flush=True)
    print(footer(results, names))
    if args.json is not None:
        write_json(args.json, {"seeds": args.seeds, "results": results})


def majority(train: Path, test: Path) -> float:
    """Test accuracy of always answering the training set's most frequent class."""
    y_train, _ = read_ucr(train)
    y_test, _ = read_ucr(test)
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_test == values[counts.argmax()]))


def header(names: list[str]) -> str:
    return "\n".join(
        [
            "| dataset | majority | " + " | ".join(names) + " |",
            "|---|---:|" + "---:|" * len(names),
        ]
    )


def row(dataset: str, result: dict, names: list[str]) -> str:
    cells = " | ".join(summary(result["models"][n]) for n in names)
    return f"| {dataset} | {result['majority']:.3f} | {cells} |"


def footer(results: dict, names: list[str]) -> str:
    means = [
        statistics.mean(
            statistics.mean(r["accuracy"] for r in results[d]["models"][n]) for d in results
        )
        for n in names
    ]
    majority_mean = statistics.mean(r["majority"] for r in results.values())
    return f"| mean | {majority_mean:.3f} | " + " | ".join(f"{m:.3f}" for m in means) + " |"


def table(path: Path) -> None:
    """The table of a saved ``--json`` file, printed again without training."""
    results = json.loads(path.read_text())["results"]
    names = list(next(iter(results.values()))["models"])
    print(header(names))
    for dataset, result in results.items():
        print(row(dataset, result, names))
    print(footer(results, names))


if __name__ == "__main__":
    main()
