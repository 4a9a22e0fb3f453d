"""Figures a user would rather look at than read: curves, confusion matrices, predictions,
attention, gradient flow and gates."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe on servers and in CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from rnnlab.files import atomic_path


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip("."))
    plt.close(fig)


def learning_curves(
    history: list[dict[str, float]], path: Path, title: str = "", best_epoch: int | None = None
) -> None:
    """Training loss and every validation metric per epoch, one panel each; ``best_epoch`` (the
    weights the run kept) is marked on every panel."""
    epochs = [row["epoch"] for row in history]
    keys = [k for k in history[0] if k.startswith("val_") and k != "val_loss"]
    fig, axes = plt.subplots(1, 1 + len(keys), figsize=(4.2 * (1 + len(keys)), 3.4), squeeze=False)
    axes[0, 0].plot(epochs, [row["train_loss"] for row in history], marker=".", label="train")
    if "val_loss" in history[0]:
        axes[0, 0].plot(epochs, [row["val_loss"] for row in history], marker=".", label="val")
    axes[0, 0].set(title="loss")
    for ax, key in zip(axes[0, 1:], keys, strict=True):
        ax.plot(epochs, [row[key] for row in history], marker=".", color="tab:green")
        ax.set(title=key)
    for ax in axes[0]:
        if best_epoch:
            ax.axvline(
                best_epoch, color="tab:gray", ls="--", lw=0.8, label=f"kept: epoch {best_epoch}"
            )
        # Whole epochs only (a short run's axis would read 0.96 … 1.04).
        if len(epochs) <= 10:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.suptitle(title, y=1.03)  # above the panels' own titles
    _save(fig, path)


def confusion(cm: np.ndarray, names: list[str], path: Path, title: str = "") -> None:
    """Confusion matrix as a heatmap of row-normalised rates, with the counts written in."""
    cm = np.asarray(cm)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = 1.0 + 0.6 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            color = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    _save(fig, path)


def predictions(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    path: Path,
    title: str = "",
    baseline=None,
    xlabel: str = "test step (hours)",
    ylabel: str = "value (the data's own units)",
) -> None:
    """A window of a series: truth, the model's prediction and, optionally, a baseline."""
    fig, ax = plt.subplots(figsize=(10, 3.4))
    steps = np.arange(len(y_true))
    ax.plot(steps, y_true, color="black", lw=1.2, label="true")
    ax.plot(steps, y_pred, color="tab:red", lw=1.0, label="predicted")
    if baseline is not None:
        ax.plot(steps, baseline, color="tab:gray", lw=0.8, ls="--", label="persistence")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    _save(fig, path)


def attention(
    examples: list[tuple[np.ndarray, list[str], list[str]]], path: Path, title: str = ""
) -> None:
    """Attention weights of a few examples, one heatmap each: (weights (T, S), source, output)."""
    fig, axes = plt.subplots(
        1, len(examples), figsize=(3.2 * len(examples) + 1, 3.4), squeeze=False
    )
    for ax, (weights, source, output) in zip(axes[0], examples, strict=True):
        image = ax.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        show = [t.replace(" ", "␣") for t in source]
        ax.set_xticks(range(len(source)), show, fontsize=8, rotation=90 if len(source) > 12 else 0)
        ax.set_yticks(range(len(output)), [t.replace(" ", "␣") for t in output], fontsize=8)
        ax.set(xlabel="source (as the encoder reads it)", ylabel="output")
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, label="attention weight")
    fig.suptitle(title)
    _save(fig, path)


def compare_curves(
    histories: dict[str, list[list[dict[str, float]]]], path: Path, title: str = ""
) -> None:
    """Validation curves of several runs per label: the mean per epoch, a band of ± one std.

    ``histories`` maps a label (a cell) to one history per run; a run that stopped early simply
    leaves the later epochs to the others.
    """
    first = next(iter(histories.values()))[0]
    keys = [k for k in first[0] if k.startswith("val_")]
    fig, axes = plt.subplots(
        1, len(keys), figsize=(4.4 * len(keys), 3.4), squeeze=False, layout="constrained"
    )
    for ax, key in zip(axes[0], keys, strict=True):
        for label, runs in histories.items():
            epochs = max(len(h) for h in runs)
            values = np.full((len(runs), epochs), np.nan)
            for i, history in enumerate(runs):
                values[i, : len(history)] = [row[key] for row in history]
            counts = np.isfinite(values).sum(0)
            mean = np.nanmean(values, axis=0)
            # Sample standard deviation (n - 1); an epoch only one run reached has no spread.
            std = np.sqrt(np.nansum((values - mean) ** 2, axis=0) / np.maximum(counts - 1, 1))
            x = np.arange(1, epochs + 1)
            (line,) = ax.plot(x, mean, marker=".", label=f"{label} (n={len(runs)})")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set(title=key, xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.suptitle(title, y=1.03)  # above the panels' own titles
    _save(fig, path)


def gradient_flow(
    panels: list[tuple[str, dict[str, np.ndarray]]],
    steps: dict[str, np.ndarray],
    path: Path,
    title: str = "",
) -> None:
    """‖∂L/∂h_t‖ over t on a log scale, one panel per group of curves, then the total gradient
    norm of every training step (also log scale)."""
    fig, axes = plt.subplots(
        1, len(panels) + 1, figsize=(4.6 * (len(panels) + 1), 3.8), layout="constrained"
    )
    for ax, (name, curves) in zip(axes[:-1], panels, strict=True):
        for label, norms in curves.items():
            ax.plot(np.arange(1, len(norms) + 1), norms, label=label)
        ax.set(title=name, xlabel="step t", ylabel="‖∂L/∂h_t‖", yscale="log")
        ax.legend(fontsize=7)
    ax = axes[-1]
    for label, norms in steps.items():
        ax.plot(np.arange(1, len(norms) + 1), norms, lw=0.8, label=label)
    ax.set(title="gradient norm per training step", xlabel="training step", yscale="log")
    ax.legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title)
    _save(fig, path)


_BOUNDED = {"forget", "input", "output", "reset", "update"}  # sigmoids, in [0, 1]


def gates(
    tokens: list[str], values: dict[str, np.ndarray], units: np.ndarray, path: Path, title: str = ""
) -> None:
    """One heatmap per gate, units (rows) over the input tokens (columns), aligned one above
    another. ``values[name]`` is (tokens, units); sigmoid gates share a 0..1 scale, the candidate
    −1..1, the cell state its own symmetric one."""
    shown = [t.replace(" ", "␣").replace("\n", "↵") for t in tokens]
    rows = len(units)
    width = max(6.0, 0.16 * len(tokens) + 2.0)
    fig, axes = plt.subplots(
        len(values),
        1,
        figsize=(width, len(values) * (0.11 * rows + 1.0)),
        squeeze=False,
        layout="constrained",  # keeps the title, heatmaps and colour bars tight and aligned
    )
    for ax, (name, grid) in zip(axes[:, 0], values.items(), strict=True):
        if name in _BOUNDED:
            scale = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
        else:
            limit = 1.0 if name == "candidate" else float(np.abs(grid).max()) or 1.0
            scale = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}
        image = ax.imshow(grid.T, aspect="auto", interpolation="nearest", **scale)
        ax.set_ylabel(name)
        step = max(1, rows // 8)
        ax.set_yticks(range(0, rows, step), [str(u) for u in units[::step]], fontsize=7)
        words = max(len(t) for t in shown) > 1
        ax.set_xticks(
            range(len(shown)), shown, fontsize=7 if words else 8, rotation=90 if words else 0
        )
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.005)
    axes[-1, 0].set_xlabel("input, as the model reads it (rows: units)")
    fig.suptitle(title)
    _save(fig, path)
