"""The shared trainer and the config layer on tiny synthetic problems."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from rnnlab import runtime
from rnnlab.config import load_config, parse_override
from rnnlab.errors import RnnlabError
from rnnlab.nn import ManyToOne, RecurrentConfig
from rnnlab.training.batches import TensorBatches
from rnnlab.training.callbacks import lower_is_better
from rnnlab.training.config import TrainConfig
from rnnlab.training.device import missing_for, resolve_precision
from rnnlab.training.optim import build_optimizer, build_schedule
from rnnlab.training.trainer import Trainer


def _problem(n=256, steps=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, 1, generator=g)
    return {"x": x, "y": x.sum(dim=(1, 2))}  # many-to-one: the sum of the sequence


def _fit(cell="gru", console=None, **train):
    torch.manual_seed(0)
    cfg = TrainConfig(**({"epochs": 8, "batch_size": 32, "lr": 0.02, "monitor": "val_mse"} | train))
    model = ManyToOne(1, 1, hidden=16, cell=cell, gru_variant="cudnn")
    data, val = _problem(), _problem(64, seed=1)

    def loss(m, batch, state):
        return F.mse_loss(m(batch["x"]).squeeze(-1), batch["y"]), None

    @torch.no_grad()
    def evaluate(m):
        return {"val_mse": float(F.mse_loss(m(val["x"]).squeeze(-1), val["y"]))}

    trainer = Trainer(
        model, cfg, loss, evaluate, torch.device("cpu"), quiet=console is None, console=console
    )
    return trainer.fit(TensorBatches(data, cfg.batch_size, seed=cfg.seed)), model, evaluate


def test_trainer_learns_and_restores_the_best_epoch():
    result, model, evaluate = _fit()
    first, best = result.history[0]["val_mse"], min(r["val_mse"] for r in result.history)
    assert best < first / 4
    assert result.best_value == best
    assert evaluate(model)["val_mse"] == pytest.approx(best)  # best weights restored


def test_same_seed_same_history_on_cpu():
    a, _, _ = _fit()
    b, _, _ = _fit()
    assert [r["val_mse"] for r in a.history] == [r["val_mse"] for r in b.history]


@pytest.mark.parametrize(
    "train",
    [
        {"optimizer": "sgd", "momentum": 0.9},
        {"optimizer": "rmsprop"},
        {"schedule": "cosine", "clip_norm": 1.0},
        {"schedule": "onecycle", "clip_value": 0.5},
    ],
)
def test_every_optimizer_and_schedule_trains(train):
    result, _, _ = _fit(**train)
    assert result.history[-1]["val_mse"] < result.history[0]["val_mse"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_trains_an_lstm_on_any_cpu(precision):
    # oneDNN builds no half-precision LSTM on a CPU without the instructions for it (AVX2 EPYCs
    # for both, AVX-512-BF16 ones for fp16): the trainer then trains in fp32 instead of failing.
    result, _, _ = _fit(cell="lstm", precision=precision, epochs=3)
    assert result.history[-1]["val_mse"] < result.history[0]["val_mse"]


def test_asking_the_cpu_draws_no_random_numbers():
    runtime.cpu_runs.cache_clear()
    before = torch.get_rng_state()
    runtime.cpu_runs(torch.bfloat16)
    assert torch.equal(torch.get_rng_state(), before)


def test_without_the_instructions_half_precision_trains_in_fp32_and_says_so(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_runs", lambda dtype: False)
    shown = io.StringIO()
    half, _, _ = _fit(precision="bf16", epochs=2, console=Console(file=shown, width=200))
    full, _, _ = _fit(epochs=2)
    assert [r["val_mse"] for r in half.history] == [r["val_mse"] for r in full.history]
    assert "train.precision='bf16': this CPU has no bf16 instructions" in shown.getvalue()
    assert "training in fp32" in shown.getvalue()


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_precision_is_bf16_where_the_cpu_has_it_and_fp32_quietly_elsewhere(
    monkeypatch, has_bf16
):
    monkeypatch.setattr(runtime, "cpu_runs", lambda dtype: has_bf16)
    shown = io.StringIO()
    auto, _, _ = _fit(precision="auto", epochs=2, console=Console(file=shown, width=200))
    asked, _, _ = _fit(precision="bf16" if has_bf16 else "fp32", epochs=2)
    assert [r["val_mse"] for r in auto.history] == [r["val_mse"] for r in asked.history]
    assert "warning" not in shown.getvalue()
    assert resolve_precision(torch.device("cpu"), "auto") == ("bf16" if has_bf16 else "fp32")
    assert resolve_precision(torch.device("cuda"), "auto") == "fp32"  # launch-bound there
    assert resolve_precision(torch.device("cpu"), "fp16") == "fp16"


@pytest.mark.parametrize(
    ("capability", "missing"), [((7, 5), "compute capability 7.5"), ((8, 0), None), ((9, 0), None)]
)
def test_bf16_needs_a_gpu_of_compute_capability_8(monkeypatch, capability, missing):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    found = missing_for(torch.device("cuda"), "bf16")
    assert found == missing if missing is None else missing in found
    assert missing_for(torch.device("cuda"), "fp16") is None


def test_early_stopping_stops_after_patience():
    result, _, _ = _fit(lr=1e-9, patience=2)  # nothing improves after the first epoch
    assert result.stopped_early and len(result.history) == 3


def test_divergence_is_a_one_line_error_naming_the_epoch():
    with pytest.raises(RnnlabError, match=r"diverged at epoch 1.*clip_norm"):
        _fit(lr=1e30, optimizer="sgd")


def test_a_non_finite_gradient_stops_before_the_weights_change():
    torch.manual_seed(0)
    model = ManyToOne(1, 1, hidden=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def loss(m, batch, state):  # value 0, gradient of sqrt at 0: infinite
        out = m(batch["x"])
        return torch.sqrt((out - out.detach()).abs()).sum(), None

    cfg = TrainConfig(epochs=1, batch_size=8, monitor="val_mse")
    trainer = Trainer(model, cfg, loss, lambda m: {"val_mse": 0.0}, torch.device("cpu"), quiet=True)
    with pytest.raises(RnnlabError, match=r"epoch 1, step 1: the gradient norm is"):
        trainer.fit(TensorBatches(_problem(16), 8))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_tensor_batches_cover_every_example_once_per_epoch():
    batches = TensorBatches({"i": torch.arange(10)}, 3, seed=4)
    seen = torch.cat([b["i"] for b in batches.epoch(0)])
    assert sorted(seen.tolist()) == list(range(10)) and len(batches) == 4
    assert seen.tolist() != torch.cat([b["i"] for b in batches.epoch(1)]).tolist()


def test_lower_is_better():
    assert lower_is_better("val_loss") and lower_is_better("val_bpc")
    assert not lower_is_better("val_accuracy") and not lower_is_better("val_r2")


@dataclass
class _Data:
    size: int = 3


SECTIONS = {"data": _Data, "model": RecurrentConfig, "train": TrainConfig}


def test_overrides_are_typed_and_ints_widen_to_floats(tmp_path, monkeypatch):
    monkeypatch.setattr("rnnlab.config.CONFIG_DIR", tmp_path)
    (tmp_path / "toy.toml").write_text('task = "toy"\n[train]\nepochs = 2\n')
    cfg = load_config("toy", SECTIONS, overrides=["train.lr=1", "model.cell=gru", "data.size=5"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model.cell == "gru" and cfg.data.size == 5 and cfg.train.epochs == 2
    assert 'cell = "gru"' in cfg.to_toml()


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("train.epochs=2.5", "train.epochs"),
        ("model.bidirectional=1", "model.bidirectional"),
        ("model.hidden=0", "model.hidden"),
        ("model.dropout=1.0", "model.dropout"),
        ("model.weight_drop=-0.1", "model.weight_drop"),
        ("train.batch_size=true", "train.batch_size"),
        ("model.forget_bias=1.0", "model.forget_bias"),
        ("data.sise=4", "did you mean data.size"),
        ("data.window=4", r"unknown config key data.window \(data keys: size\)"),
    ],
)
def test_bad_overrides_name_the_key(tmp_path, monkeypatch, override, match):
    monkeypatch.setattr("rnnlab.config.CONFIG_DIR", tmp_path)
    (tmp_path / "toy.toml").write_text('task = "toy"\n[model]\ncell = "gru"\n')
    with pytest.raises(RnnlabError, match=match):
        load_config("toy", SECTIONS, overrides=[override])


def test_parse_override_reads_toml_values_and_falls_back_to_strings():
    assert parse_override("train.lr=3e-4") == ("train", "lr", 3e-4)
    assert parse_override("data.path=/tmp/x.csv") == ("data", "path", "/tmp/x.csv")
    assert parse_override("data.columns=[0, 2]") == ("data", "columns", [0, 2])


def test_length_buckets_cover_every_example_once_with_little_padding():
    from rnnlab.training.batches import LengthBuckets

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 30, (500,), generator=g)
    x = torch.arange(500)[:, None].expand(500, 30).clone()
    buckets = LengthBuckets({"x": x, "lengths": lengths, "i": torch.arange(500)}, 20, seed=1)
    batches = list(buckets.epoch(0))
    seen = torch.cat([b["i"] for b in batches])
    assert sorted(seen.tolist()) == list(range(500))
    for b in batches:
        assert b["x"].shape[1] == int(b["lengths"].max())  # trimmed to the longest
        assert torch.equal(b["x"][:, 0], b["i"])  # rows stay with their examples
    padded = sum(b["x"].numel() for b in batches)
    assert padded < 1.2 * int(lengths.sum())
    assert [b["i"].tolist() for b in batches] != [b["i"].tolist() for b in buckets.epoch(1)]


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_a_tensor_rate_follows_the_cosine_schedule_and_trains_the_same(optimizer):
    # What CUDA graphs with a schedule use (a rate the graph reads from a tensor), on the CPU:
    # the same rates as CosineAnnealingLR, and the same weights after training.
    cfg = TrainConfig(optimizer=optimizer, lr=0.05, momentum=0.9, schedule="cosine")
    weights, rates = [], []
    for lr_on in (None, torch.device("cpu")):
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        opt = build_optimizer(model.parameters(), cfg, lr_on=lr_on)
        schedule = build_schedule(opt, cfg, steps=20)
        seen = []
        for _ in range(20):
            opt.zero_grad()
            model(torch.randn(8, 3)).square().mean().backward()
            opt.step()
            schedule.step()
            seen.append(float(opt.param_groups[0]["lr"]))
        weights.append(model.weight.detach())
        rates.append(seen)
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    assert rates[1] == pytest.approx(rates[0], abs=1e-7)
    assert rates[1][-1] == pytest.approx(0.0, abs=1e-7) and rates[1][9] == pytest.approx(0.025)
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-5, atol=1e-6)
