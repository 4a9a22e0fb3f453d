"""`rnnlab diagnose`: the gradient measurement against independent computations, the adding
problem, the gradient study's files, and gate heatmaps of trained text models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import assert_one_line_error, rnnlab
from slices import tweets_slice, verse_file

from rnnlab.nn import ManyToOne
from rnnlab.nn.cells import gru_step, lstm_step, rnn_step
from rnnlab.runs.diagnose import adding_problem, gate_activations, hidden_gradient_norms
from rnnlab.runs.pipeline import run
from rnnlab.tasks import Sentiment, TextGeneration


@pytest.fixture(autouse=True, scope="module")
def keep_threads():
    """`diagnose gradients` and the runs set the thread count; later tests get it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _tiny_model(cell: str) -> ManyToOne:
    torch.manual_seed(0)
    return ManyToOne(2, 1, hidden=5, cell=cell, gru_variant="cudnn")


def _norms_by_retained_states(model: ManyToOne, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The cells' step functions looped by hand, every h_t kept with ``retain_grad``."""
    rnn, cell = model.rnn.rnn, model.rnn.cell
    w_ih, w_hh, b_ih, b_hh = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
    h = x.new_zeros(x.shape[0], 5)
    c, kept = torch.zeros_like(h), []
    for t in range(x.shape[1]):
        gi = F.linear(x[:, t], w_ih, b_ih)
        if cell == "lstm":
            (h, c), _ = lstm_step(gi, (h, c), w_hh, b_hh)
        elif cell == "gru":
            (h,), _ = gru_step(gi, (h,), w_hh, b_hh, variant="cudnn")
        else:
            (h,), _ = rnn_step(gi, (h,), w_hh, b_hh)
        h.retain_grad()
        kept.append(h)
    ((model.head(h).squeeze(-1) - y) ** 2).sum().backward()
    return torch.stack([k.grad.norm(dim=-1).mean() for k in kept])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradient_norms_match_autograd_on_retained_hidden_states(float64, cell):
    data = adding_problem(6, 9, seed=3)
    model = _tiny_model(cell)
    ours = hidden_gradient_norms(model, data["x"], data["y"])
    theirs = _norms_by_retained_states(model, data["x"], data["y"])
    assert ours.shape == (9,)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-14)


def test_gradient_norms_of_a_vanilla_rnn_match_backpropagation_by_hand(float64):
    """δ_T = 2 (ŷ - y) w_head; δ_t = W_hhᵀ ((1 - h_{t+1}²) δ_{t+1}), per example, in NumPy."""
    data = adding_problem(4, 7, seed=5)
    model = _tiny_model("rnn")
    rnn = model.rnn.rnn
    w_ih, w_hh = rnn.weight_ih_l0.detach().numpy(), rnn.weight_hh_l0.detach().numpy()
    bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().numpy()
    w_out, b_out = model.head.weight.detach().numpy()[0], model.head.bias.item()
    x, y = data["x"].numpy(), data["y"].numpy()
    expected = np.zeros(7)
    for i in range(len(x)):
        hs, h = [], np.zeros(5)
        for t in range(7):
            h = np.tanh(w_ih @ x[i, t] + w_hh @ h + bias)
            hs.append(h)
        delta = 2 * (w_out @ h + b_out - y[i]) * w_out
        for t in reversed(range(7)):
            expected[t] += np.linalg.norm(delta) / len(x)
            if t:
                delta = w_hh.T @ ((1 - hs[t] ** 2) * delta)
    ours = hidden_gradient_norms(model, data["x"], data["y"]).detach().numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-10)


def test_adding_problem_marks_one_value_in_each_half_and_sums_them():
    data = adding_problem(20000, 10, seed=0)
    x, y = data["x"], data["y"]
    markers = x[..., 1]
    assert torch.equal(markers[:, :5].sum(1), torch.ones(20000))
    assert torch.equal(markers[:, 5:].sum(1), torch.ones(20000))
    torch.testing.assert_close(y, (x[..., 0] * markers).sum(1))
    assert abs(float(((y - 1.0) ** 2).mean()) - 1 / 6) < 0.01  # the trivial baseline, ≈ 0.167


def test_gradient_study_writes_its_table_curves_and_plot(capsys, tmp_path):
    out = tmp_path / "gradients"
    code, stdout, err = rnnlab(
        capsys, "diagnose", "gradients", "--length", "10", "--steps", "20", "--hidden", "6",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert {"gradients.csv", "gradient_curves.csv", "gradients.png"} <= {
        p.name for p in out.iterdir()
    }
    with open(out / "gradients.csv") as f:
        rows = {row["model"]: row for row in csv.DictReader(f)}
    assert list(rows) == [
        "rnn",
        "lstm, forget_bias=0",
        "lstm, forget_bias=1",
        "gru",
        "rnn, radius 2, no clipping",
        "rnn, radius 2, clip_norm=1",
    ]
    columns = {"grad_ratio_init", "grad_ratio_trained", "mse_init", "mse_trained",
               "baseline_mse", "max_grad_norm", "max_applied_norm", "train_seconds"}  # fmt: skip
    assert columns <= set(next(iter(rows.values())))
    assert all(int(r["steps"]) == 20 for r in rows.values())
    # The printed table wraps long model names rather than cutting them short, nor any number.
    assert "forget_bias=0" in stdout and "forget_bias=1" in stdout and "…" not in stdout, stdout
    exploding, clipped = rows["rnn, radius 2, no clipping"], rows["rnn, radius 2, clip_norm=1"]
    assert float(exploding["spectral_radius"]) == pytest.approx(2.0, rel=1e-3)
    # Radius 2: the gradient grows on its way back in time, where the plain RNN's shrinks.
    assert float(exploding["grad_ratio_init"]) > 1 > float(rows["rnn"]["grad_ratio_init"])
    assert float(clipped["max_applied_norm"]) <= 1.0 + 1e-4
    assert float(exploding["max_applied_norm"]) == float(exploding["max_grad_norm"])
    with open(out / "gradient_curves.csv") as f:
        curves = list(csv.DictReader(f))
    per_t = [r for r in curves if r["model"] == "gru" and r["curve"] == "grad_h_t_init"]
    assert [int(r["index"]) for r in per_t] == list(range(1, 11))
    assert "ratio = ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖" in stdout and "gru" in stdout


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--cells", "rnn,transformer"], ["--cells", "rnn,transformer"]),
        (["--length", "1"], ["--length"]),
        (["--init", "xavier"], ["--init", "xavier"]),
        (["--steps", "0"], ["--steps"]),
        (["--seed", "99999999999"], ["--seed"]),
    ],
)
def test_gradient_study_bad_options_are_one_line_errors(capsys, tmp_path, args, names):
    code, _, err = rnnlab(capsys, "diagnose", "gradients", "--out", str(tmp_path / "g"), *args)
    assert_one_line_error(code, err, *names)
    assert not (tmp_path / "g").exists()  # no empty output directory left behind


# -- gates -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def char_runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny one-epoch text-generation runs, one per cell."""
    root = tmp_path_factory.mktemp("char")
    verse = verse_file(root)
    runs = {}
    for cell in ("lstm", "rnn"):
        sets = [f"data.path='{verse}'", "data.maxlen=10", f"model.cell='{cell}'",
                "model.hidden=6", "train.epochs=1", "train.sample_length=10",
                "train.sample_lines=1"]  # fmt: skip
        cfg = TextGeneration.config(None, sets)
        runs[cell] = run(TextGeneration, cfg, root / cell, "cpu", quiet=True)
    return runs


def test_gates_of_an_lstm_line_up_with_the_characters(capsys, char_runs, tmp_path):
    text = "The merry bells"
    trace = gate_activations(char_runs["lstm"], text)
    assert trace.tokens == list(text.lower())
    assert set(trace.gates) == {"forget", "input", "candidate", "output", "cell"}
    for name, values in trace.gates.items():
        assert values.shape == (len(text), 6), name
    for name in ("forget", "input", "output"):
        assert trace.gates[name].min() >= 0.0 and trace.gates[name].max() <= 1.0
    path = tmp_path / "gates.png"
    code, stdout, err = rnnlab(
        capsys, "diagnose", "gates", str(char_runs["lstm"]), "--text", text,
        "--units", "4", "--out", str(path),
    )  # fmt: skip
    assert code == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{len(text)} tokens" in stdout


def test_gates_of_a_sentiment_gru_line_up_with_the_known_words(shared_data, tmp_path):
    tweets = tweets_slice(shared_data, tmp_path, 400)
    sets = [f"data.path='{tweets}'", "model.cell='gru'", "model.hidden=6", "model.embedding=4",
            "train.epochs=1"]  # fmt: skip
    run_dir = run(Sentiment, Sentiment.config(None, sets), tmp_path / "run", "cpu", quiet=True)
    vocab = json.loads(json.loads((run_dir / "model.json").read_text())["vocab"])["words"]
    assert {"flight", "thanks"} <= set(vocab)
    trace = gate_activations(run_dir, "Thanks for the flight zzzunknownzzz")
    assert trace.cell == "gru" and set(trace.gates) == {"reset", "update", "candidate"}
    assert "flight" in trace.tokens and "zzzunknownzzz" not in trace.tokens
    assert trace.gates["update"].shape == (len(trace.tokens), 6)


def test_gates_bad_inputs_are_one_line_errors(capsys, char_runs, tmp_path):
    def gates(run_dir: Path, *args: str) -> tuple[int, str]:
        code, _, err = rnnlab(capsys, "diagnose", "gates", str(run_dir), *args)
        return code, err

    code, err = gates(char_runs["rnn"], "--text", "merry")
    assert_one_line_error(code, err, "no gates")
    code, err = gates(char_runs["lstm"], "--text", "merry €")
    assert_one_line_error(code, err, "--text", "'€'")
    code, err = gates(char_runs["lstm"], "--text", "merry", "--layer", "2")
    assert_one_line_error(code, err, "--layer 2")
    code, err = gates(char_runs["lstm"], "--text", "merry", "--out", str(tmp_path / "gates"))
    assert_one_line_error(code, err, "--out", ".png")
    other = tmp_path / "aq"
    other.mkdir()
    (other / "model.json").write_text('{"format_version": 1, "task": "air-quality"}')
    code, err = gates(other, "--text", "merry")
    assert_one_line_error(code, err, "air-quality", "text-generation")
