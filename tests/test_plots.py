"""The learning curves: one panel per curve, whole epochs, the kept epoch marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from rnnlab import plots


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots would write, kept open for inspection instead."""
    made = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: made.append(fig))
    yield made
    for fig in made:
        plt.close(fig)


def _history(epochs: int, *metrics: str) -> list[dict[str, float]]:
    return [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e + 0.1, **dict.fromkeys(metrics, e / 9)}
        for e in range(1, epochs + 1)
    ]


@pytest.mark.parametrize(("metrics", "panels"), [((), 1), (("val_accuracy", "val_macro_f1"), 3)])
def test_one_panel_for_the_losses_and_one_per_validation_metric(figures, metrics, panels):
    plots.learning_curves(_history(4, *metrics), Path("curves.png"), "task", best_epoch=3)
    (fig,) = figures
    assert [ax.get_title() for ax in fig.axes] == ["loss", *metrics][:panels]
    for ax in fig.axes:  # the kept epoch: a vertical line at x = 3 on every panel
        assert any(list(line.get_xdata()) == [3, 3] for line in ax.get_lines())


def test_a_one_epoch_run_shows_whole_epochs_only(figures):
    plots.learning_curves(_history(1, "val_accuracy"), Path("curves.png"), "task", best_epoch=1)
    for ax in figures[0].axes:
        assert list(ax.get_xticks()) == [1]
