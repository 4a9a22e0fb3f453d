"""Looking inside recurrent models: how the gradient flows back through time, and what the gates do.

Gradient flow. The adding problem (Hochreiter & Schmidhuber 1997, as Le et al. 2015 set it): every
step holds a value in [0, 1) and a marker; two steps are marked, one in each half of the sequence,
and the target is the sum of the two marked values. Predicting the mean sum scores an MSE of
1/6 ≈ 0.167, so a model beats that only by carrying the first marked value across about T/2 steps.
For every model, :func:`hidden_gradient_norms` measures ‖∂L/∂h_t‖ at every step t, at
initialisation and after training; the ratio ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ says how much of the loss's
gradient reaches the first step. The models: a vanilla RNN, an LSTM with a forget-gate bias of 0
and of 1 (Jozefowicz et al. 2015), a GRU; and a vanilla RNN whose recurrent matrix is scaled to a
spectral radius of 2 and trained by SGD with and without gradient clipping, whose gradient explodes.

Gates. :func:`gate_activations` runs a trained text-generation or sentiment model over a text on
the reference engine and returns every gate (and the LSTM's cell state) at every token.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab import plots
from rnnlab.data.tweets import encoder_from_json
from rnnlab.errors import RnnlabError
from rnnlab.files import write_csv
from rnnlab.nn import CELLS, ManyToOne, ManyToOneConfig, Recurrent
from rnnlab.nn.heads import last_hidden
from rnnlab.runs.restore import restore, task_of
from rnnlab.training.batches import TensorBatches
from rnnlab.training.callbacks import BestEpoch, Callback, EpochEnd
from rnnlab.training.config import TrainConfig
from rnnlab.training.trainer import Trainer

EVALUATIONS = 10  # validation points per training run (the trainer's epochs)
BATCH_SIZE = 64
EXPLODING_RADIUS = 2.0
CURVES = {  # gradient_curves.csv's names for what is measured
    "init": "grad_h_t_init",  # ‖∂L/∂h_t‖, index = t
    "trained": "grad_h_t_trained",
    "before": "step_grad_norm",  # the total gradient norm of a training step, index = step
    "applied": "step_applied_norm",  # the same after clipping, as the optimizer applied it
}


# -- gradient flow ---------------------------------------------------------------------------
def adding_problem(examples: int, length: int, seed: int) -> dict[str, Tensor]:
    """``x`` (N, T, 2): values in [0, 1) and a marker channel with two 1s, one in each half;
    ``y`` (N,): the sum of the two marked values."""
    if length < 2:
        raise RnnlabError(f"--length must be >= 2 (one marker in each half), got {length}")
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(examples, length, generator=g)
    rows = torch.arange(examples)
    markers = torch.zeros(examples, length)
    markers[rows, torch.randint(0, length // 2, (examples,), generator=g)] = 1.0
    markers[rows, torch.randint(length // 2, length, (examples,), generator=g)] = 1.0
    return {"x": torch.stack([values, markers], dim=-1), "y": (values * markers).sum(1)}


def hidden_gradient_norms(model: ManyToOne, x: Tensor, y: Tensor) -> Tensor:
    """‖∂L_i/∂h_t‖ for t = 1..T (top layer), averaged over the examples i: (T,).

    ``L_i`` is example i's own squared error. The model is stepped one time step at a time with
    its state handed back in, so each ``h_t`` is the very tensor every later step reads: its
    gradient is the total derivative through all later steps (through ``c_t`` too, for an LSTM).
    """
    if model.rnn.directions != 1:
        raise ValueError("gradient flow through time is measured on a forward-only model")
    states, state = [], None
    for t in range(x.shape[1]):
        _, state = model.rnn(x[:, t : t + 1], state=state)
        states.append(state[0] if isinstance(state, tuple) else state)  # (layers, B, H)
    pred = model.head(last_hidden(state, 1)).squeeze(-1)  # (B,)
    loss = F.mse_loss(pred, y, reduction="sum")  # a sum: each example's gradient is its own loss's
    grads = torch.autograd.grad(loss, states)
    return torch.stack([g[-1].norm(dim=-1).mean() for g in grads])


def spectral_radius(matrix: Tensor) -> float:
    """The largest absolute eigenvalue of a square matrix."""
    return float(torch.linalg.eigvals(matrix.detach().double()).abs().max())


@dataclass(frozen=True)
class Study:
    """One model of the gradient study and how it is trained."""

    name: str
    cell: str
    forget_bias: float | None = None
    radius: float | None = None  # rescale the recurrent matrix to this spectral radius
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = 0.01
    momentum: float = 0.0
    clip_norm: float | None = None


def studies(cells: Sequence[str]) -> list[Study]:
    """The models for ``cells``: a cell with a forget gate twice (its bias 0 and 1); then, for a
    cell without gates, the exploding pair (its one recurrent matrix scaled to a spectral radius
    of 2, SGD with and without clipping)."""
    found = []
    for name in cells:
        if CELLS[name].forget_block is not None:
            found += [Study(f"{name}, forget_bias={b:g}", name, forget_bias=b) for b in (0.0, 1.0)]
        else:
            found.append(Study(name, name))
    for name in cells:
        if CELLS[name].gates or not CELLS[name].recurrent:
            continue
        # SGD, as the lab's classifiers train: the step is the gradient itself, so an exploding
        # gradient becomes an exploding step unless it is clipped (Adam would rescale it).
        for clip in (None, 1.0):
            found.append(
                Study(
                    f"{name}, radius {EXPLODING_RADIUS:g}, "
                    + ("no clipping" if clip is None else f"clip_norm={clip:g}"),
                    name,
                    radius=EXPLODING_RADIUS,
                    optimizer="sgd",
                    momentum=0.9,
                    clip_norm=clip,
                )
            )
    return found


class GradientNorms:
    """The total gradient norm of every optimizer step: as backward left it (``before``) and as
    the optimizer applied it, after clipping (``applied``)."""

    def __init__(self, trainer: Trainer) -> None:
        self.before: list[float] = []
        self.applied: list[float] = []
        self._params = [p for p in trainer.model.parameters() if p.requires_grad]
        self._squares = 0.0
        for p in self._params:  # runs inside backward, before the trainer clips
            p.register_post_accumulate_grad_hook(self._add)
        trainer.optimizer.register_step_pre_hook(self._step)

    def _add(self, param: Tensor) -> None:
        if param.grad is not None:
            self._squares += float(param.grad.detach().norm()) ** 2

    def _step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.before.append(math.sqrt(self._squares))
        self._squares = 0.0
        grads = [p.grad for p in self._params if p.grad is not None]
        self.applied.append(math.sqrt(sum(float(g.norm()) ** 2 for g in grads)))


def _build(study: Study, hidden: int, init: str, seed: int) -> ManyToOne:
    torch.manual_seed(seed)
    config = ManyToOneConfig(
        cell=study.cell,
        hidden=hidden,
        forget_bias=study.forget_bias,
        init=cast(Literal["torch", "keras"], init),
    )
    model = ManyToOne(2, 1, config)
    w_hh = model.rnn.weights(0, 0)[1]
    if study.radius is not None and w_hh is not None:  # studies() plans it for such cells only
        with torch.no_grad():
            w_hh.mul_(study.radius / spectral_radius(w_hh))
    return model


def _mse(model: ManyToOne, split: dict[str, Tensor]) -> float:
    with torch.no_grad():
        return float(F.mse_loss(model(split["x"]).squeeze(-1), split["y"]))


def _gradient_profile(model: ManyToOne, split: dict[str, Tensor]) -> np.ndarray:
    # In float64: a vanishing gradient shows its size instead of underflowing to 0.
    probe = copy.deepcopy(model).double().eval()
    return hidden_gradient_norms(probe, split["x"].double(), split["y"].double()).numpy()


def _loss(model: nn.Module, batch: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
    return F.mse_loss(model(batch["x"]).squeeze(-1), batch["y"]), None


def _study_one(
    study: Study,
    data: dict[str, dict[str, Tensor]],
    hidden: int,
    init: str,
    seed: int,
    epochs: int,
    on_epoch: Callback,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train one model with the shared trainer, measuring before and after: (row, curves)."""
    model = _build(study, hidden, init, seed)
    w_hh = model.rnn.weights(0, 0)[1]
    at_init = _gradient_profile(model, data["probe"])
    mse_init = _mse(model, data["test"])
    w_init = None if w_hh is None else float(w_hh.detach().norm())
    # Gated cells stack a matrix per gate: no one spectral radius to speak of.
    gated = CELLS[study.cell].gates
    radius = round(spectral_radius(w_hh), 4) if w_hh is not None and not gated else None
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=BATCH_SIZE,
        optimizer=study.optimizer,
        lr=study.lr,
        momentum=study.momentum,
        clip_norm=study.clip_norm,
        seed=seed,
        monitor="val_mse",
    )
    evaluate = lambda m: {"val_mse": _mse(m, data["val"])}  # noqa: E731
    trainer = Trainer(
        model, cfg, _loss, evaluate, torch.device("cpu"), callbacks=(BestEpoch(), on_epoch)
    )
    recorder = GradientNorms(trainer)
    started, diverged = time.perf_counter(), False
    try:
        trainer.fit(TensorBatches(data["train"], BATCH_SIZE, shuffle=True, seed=seed))
    except RnnlabError:  # the trainer's divergence stop: the weights are the last finite ones
        diverged = True
    seconds = time.perf_counter() - started
    trained = _gradient_profile(model, data["probe"])
    row = {
        "model": study.name,
        "cell": study.cell,
        "forget_bias": study.forget_bias,
        "spectral_radius": radius,
        "optimizer": study.optimizer,
        "lr": study.lr,
        "clip_norm": study.clip_norm,
        "steps": len(recorder.before),
        "length": data["train"]["x"].shape[1],
        "hidden": hidden,
        "grad_ratio_init": float(at_init[0] / at_init[-1]),
        "grad_ratio_trained": float(trained[0] / trained[-1]),
        "mse_init": mse_init,
        "mse_trained": _mse(model, data["test"]),
        "baseline_mse": float(((data["test"]["y"] - data["train"]["y"].mean()) ** 2).mean()),
        "max_grad_norm": max(recorder.before, default=0.0),
        "max_applied_norm": max(recorder.applied, default=0.0),
        "recurrent_norm_init": w_init,
        "recurrent_norm_trained": None if w_hh is None else float(w_hh.detach().norm()),
        "diverged": diverged,
        "train_seconds": round(seconds, 2),
    }
    found = {
        "init": at_init,
        "trained": trained,
        "before": np.asarray(recorder.before),
        "applied": np.asarray(recorder.applied),
    }
    return row, found


def gradient_study(
    cells: Sequence[str],
    out: Path,
    length: int = 100,
    hidden: int = 32,
    steps: int = 1500,
    seed: int = 0,
    init: str = "keras",
    on_progress: Callable[[str, int, int], None] | None = None,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Measure gradient flow for every model of :func:`studies`; write the files; return the rows.

    ``threads``: torch's CPU threads meanwhile (batches of 64 small sequences: one is fastest,
    and more only wait on each other when the machine is busy).

    Every model trains ``steps`` steps of batch 64 (Adam 0.01; the exploding pair SGD 0.01 with
    momentum 0.9) on the same data from the same seed. Writes ``gradients.csv`` (one row per
    model), ``gradient_curves.csv`` (every plotted number: ‖∂L/∂h_t‖ per t at init and after
    training, the gradient norm of every training step) and ``gradients.png``.
    ``on_progress(model, epochs_done, epochs_total)`` follows the training.
    """
    if steps < 1 or hidden < 1 or threads < 1:
        raise RnnlabError(
            f"--steps, --hidden and --threads must be >= 1, got {steps}, {hidden} and {threads}"
        )
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _gradient_study(cells, out, length, hidden, steps, seed, init, on_progress)
    finally:
        torch.set_num_threads(previous)


def _gradient_study(
    cells: Sequence[str],
    out: Path,
    length: int,
    hidden: int,
    steps: int,
    seed: int,
    init: str,
    on_progress: Callable[[str, int, int], None] | None,
) -> list[dict[str, Any]]:
    epochs = min(EVALUATIONS, steps)
    test = adding_problem(1024, length, seed + 2)
    data = {
        "train": adding_problem(math.ceil(steps / epochs) * BATCH_SIZE, length, seed),
        "val": adding_problem(512, length, seed + 1),
        "test": test,
        "probe": {k: t[:256] for k, t in test.items()},  # where ‖∂L/∂h_t‖ is measured
    }
    planned = studies(cells)
    rows, curves, measured = [], [], []
    for n, study in enumerate(planned):

        def on_epoch(trainer: Trainer, epoch: int, row: dict, name=study.name, done=n) -> None:
            if on_progress is not None:
                on_progress(name, done * epochs + epoch, len(planned) * epochs)

        row, found = _study_one(study, data, hidden, init, seed, epochs, EpochEnd(on_epoch))
        rows.append(row)
        measured.append((study, found))
        curves += [
            {"model": study.name, "curve": CURVES[key], "index": i + 1, "value": float(v)}
            for key, values in found.items()
            for i, v in enumerate(values)
        ]
    write_csv(out / "gradients.csv", rows)
    write_csv(out / "gradient_curves.csv", curves)
    _plot(measured, out / "gradients.png", length)
    return rows


def _plot(measured: list[tuple[Study, dict[str, np.ndarray]]], path: Path, length: int) -> None:
    """Three panels of ‖∂L/∂h_t‖ (plain models at init, after training; the exploding pair) and
    the gradient norm of every training step."""
    plain = [(s, c) for s, c in measured if s.radius is None]
    exploding = [(s, c) for s, c in measured if s.radius is not None]
    panels = [
        ("at initialisation", {s.name: c["init"] for s, c in plain}),
        ("after training", {s.name: c["trained"] for s, c in plain}),
    ]
    # The step panel shows the exploding pair if there is one: the rest would only crowd it.
    steps = {s.name: c["before"] for s, c in exploding or measured}
    if exploding:
        curves = {"at init": exploding[0][1]["init"]}
        for s, c in exploding:
            clip = "no clipping" if s.clip_norm is None else f"clip_norm={s.clip_norm:g}"
            curves[f"trained, {clip}"] = c["trained"]
            if s.clip_norm is not None:
                steps[f"{s.name}, as applied"] = c["applied"]
        panels.append((f"rnn, spectral radius {EXPLODING_RADIUS:g}, sgd", curves))
    plots.gradient_flow(panels, steps, path, title=f"adding problem, T = {length}")


# -- gates -------------------------------------------------------------------------------------
@dataclass
class GateTrace:
    """What a model's gates did over one text: ``gates[name]`` is (tokens, units)."""

    tokens: list[str]
    gates: dict[str, np.ndarray]
    cell: str
    task: str
    layer: int


def _encode(task: Any, text: str) -> tuple[Tensor, list[str]]:
    """Token ids (T,) of ``text`` as the task reads it, and the tokens as text."""
    if task.name == "sentiment":
        vocab = encoder_from_json(task.meta["vocab"])
        ids = vocab.encode(text)  # cleaned as in training; unknown words dropped or <unk>
        if not ids:
            raise RnnlabError(f"--text {text!r}: no word of the model's vocabulary")
        return torch.tensor(ids), [vocab.decode([i]) for i in ids]
    if task.meta.get("lower", True):
        text = text.lower()
    try:
        ids = task.vocab.encode(text)
    except RnnlabError as err:
        raise RnnlabError(f"--text: {err}") from None
    return ids, list(text)


def gate_activations(
    run_dir: Path, text: str, layer: int = 1, device: str = "cpu", max_tokens: int = 400
) -> GateTrace:
    """Every gate of ``layer`` (1-based; forward direction) over ``text``, via the reference engine."""
    task_cls = task_of(run_dir)
    if task_cls.name not in ("text-generation", "sentiment"):
        raise RnnlabError(
            f"{run_dir}: a {task_cls.name} run; diagnose gates reads text-generation and "
            "sentiment runs"
        )
    task, model = restore(task_cls, run_dir, device)
    rnn, embed = getattr(model, "rnn", None), getattr(model, "embed", None)
    if not isinstance(rnn, Recurrent) or not isinstance(embed, nn.Embedding):
        raise RnnlabError(f"{run_dir}: its model has no embedding and recurrent stack to trace")
    if not rnn.spec.gates:
        gated = [name for name, spec in CELLS.items() if spec.gates]
        raise RnnlabError(
            f"{run_dir}: its {rnn.cell} cell has no gates; train a model of a gated cell "
            f"({', '.join(gated)})"
        )
    if not 1 <= layer <= rnn.layers:
        raise RnnlabError(f"--layer {layer}: the model has layers 1 to {rnn.layers}")
    if not text:
        raise RnnlabError("--text is empty: give the text to run the model over")
    ids, tokens = _encode(task, text)
    if len(ids) > max_tokens:
        raise RnnlabError(
            f"--text: {len(ids)} tokens; the plot stays readable up to {max_tokens}, shorten it"
        )
    with torch.inference_mode():
        gates = rnn.gates(embed(ids[None].to(task.device)))[(layer - 1) * rnn.directions]
    return GateTrace(
        tokens,
        {name: g[0].float().cpu().numpy() for name, g in gates.items()},
        rnn.cell,
        task_cls.name,
        layer,
    )


def busiest_units(trace: GateTrace, count: int) -> np.ndarray:
    """The ``count`` units whose gates vary most over the text (summed variance), in unit order."""
    spread = sum(g.var(axis=0) for g in trace.gates.values())
    return np.sort(np.argsort(-spread, kind="stable")[:count])


def plot_gates(trace: GateTrace, path: Path, units: int = 32) -> None:
    """``gates.png``: one heatmap per gate (and the LSTM's cell state), units over tokens."""
    shown = busiest_units(trace, units)
    width = len(next(iter(trace.gates.values()))[0])
    picked = "" if len(shown) == width else f", the {len(shown)} of {width} units that vary most"
    plots.gates(
        trace.tokens,
        {name: g[:, shown] for name, g in trace.gates.items()},
        shown,
        path,
        title=f"{trace.task}, {trace.cell.upper()} layer {trace.layer}{picked}",
    )
