"""CUDA graphs for the training step: they replay what the eager step computes.

The GPU tests run where CUDA is (the benchmark machine); on a CPU only the gate is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rnnlab.nn import ManyToOne
from rnnlab.runs.pipeline import run
from rnnlab.tasks import get_task
from rnnlab.training.batches import LengthBuckets, TensorBatches
from rnnlab.training.config import TrainConfig
from rnnlab.training.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _tokens(n=300, vocab=20, longest=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, longest + 1, (n,), generator=g)
    x = torch.randint(1, vocab, (n, longest), generator=g)
    x[torch.arange(longest)[None] >= lengths[:, None]] = 0  # right padding
    return {"x": x, "lengths": lengths, "y": (x == 3).any(1).long()}


def _fit(device: str, ragged: bool, **train):
    """Train a small classifier: fixed-length batches (two shapes) or length buckets (many)."""
    torch.manual_seed(0)
    cfg = TrainConfig(
        **({"epochs": 3, "batch_size": 32, "lr": 0.01, "monitor": "val_loss"} | train)
    )
    data = _tokens()
    if not ragged:
        data = {"x": data["x"], "y": data["y"]}
    model = ManyToOne(8, 2, hidden=16, vocab_size=20)
    val = {k: t.to(device) for k, t in _tokens(64, seed=1).items()}

    def loss(m, batch, state):
        return F.cross_entropy(m(batch["x"], batch.get("lengths")).float(), batch["y"]), None

    def evaluate(m):
        return {"val_loss": float(F.cross_entropy(m(val["x"], val["lengths"]).float(), val["y"]))}

    trainer = Trainer(model, cfg, loss, evaluate, torch.device(device), quiet=True)
    source = (
        LengthBuckets(data, cfg.batch_size, seed=0, pool=3)
        if ragged
        else TensorBatches(data, cfg.batch_size, seed=0)
    )
    result = trainer.fit(source)
    return trainer, result, model


def test_no_graphs_on_the_cpu():
    trainer, _, _ = _fit("cpu", ragged=False, epochs=1)
    assert trainer.graphs is None


@cuda
@pytest.mark.parametrize(
    ("ragged", "train"),
    [
        (False, {"optimizer": "adam"}),
        (False, {"optimizer": "sgd", "momentum": 0.9, "clip_norm": 1.0}),
        (False, {"optimizer": "rmsprop", "precision": "bf16"}),
        (True, {"optimizer": "adam"}),
        # The rate changes every step in a tensor the graphs read (a float would be frozen).
        (False, {"optimizer": "adam", "schedule": "cosine"}),
        (True, {"optimizer": "sgd", "momentum": 0.9, "schedule": "cosine"}),
    ],
)
def test_graphed_training_matches_eager_training(ragged, train):
    graphed, a, model_a = _fit("cuda", ragged, **train)
    eager, b, model_b = _fit("cuda", ragged, cuda_graphs=False, **train)
    assert eager.graphs is None
    assert graphed.graphs is not None and graphed.graphs.failure is None
    assert graphed.graphs.replays > 0
    shapes = len(graphed.graphs.graphs)
    assert shapes >= 2  # the short last batch, or several length buckets
    bf16 = train.get("precision") == "bf16"
    tol = {"rtol": 2e-2, "atol": 2e-3} if bf16 else {"rtol": 1e-4, "atol": 1e-5}
    for row_a, row_b in zip(a.history, b.history, strict=True):
        assert row_a["train_loss"] == pytest.approx(
            row_b["train_loss"], rel=tol["rtol"], abs=tol["atol"]
        )
    for (name, p), q in zip(
        model_a.state_dict().items(), model_b.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name, **tol)


@cuda
def test_the_one_cycle_schedule_trains_without_graphs():
    # It cycles the momentum too, a number a graph would freeze.
    trainer, result, _ = _fit("cuda", ragged=False, epochs=1, schedule="onecycle")
    assert trainer.graphs is None and len(result.history) == 1


@cuda
def test_graphs_on_the_bidirectional_sentiment_config_match_eager_training(tmp_path, shared_data):
    # Packed sequences (a backward direction) read their lengths on the host, which a capture
    # may refuse: then the run warns and goes on eagerly, to the eager run's result.
    task = get_task("sentiment")
    metrics = []
    for graphs in ("true", "false"):
        sets = ["train.epochs=2", f"train.cuda_graphs={graphs}"]
        cfg = task.config(CONFIGS / "sentiment-best.toml", sets)
        run_dir = run(task, cfg, tmp_path / graphs, "cuda", True, shared_data)
        metrics.append(json.loads((run_dir / "metrics.json").read_text()))
    assert metrics[1]["cuda_graphs"] is False
    for key in ("test_accuracy", "test_loss"):
        assert metrics[0][key] == pytest.approx(metrics[1][key], abs=0.01), key


@cuda
def test_the_addition_task_gives_the_same_metrics_with_graphs(tmp_path):
    task = get_task("addition")
    metrics = []
    for graphs in ("true", "false"):
        sets = ["data.examples=3000", "data.test_examples=500", "train.epochs=2"]
        cfg = task.config(None, [*sets, f"train.cuda_graphs={graphs}"])
        run_dir = run(task, cfg, tmp_path / graphs, device="cuda", quiet=True)
        metrics.append(json.loads((run_dir / "metrics.json").read_text()))
    assert [m["cuda_graphs"] for m in metrics] == [True, False]
    for key in ("test_exact_match", "test_loss"):
        assert metrics[0][key] == pytest.approx(metrics[1][key], abs=0.01), key
