"""Ensembles of runs: the combination rules, and `rnnlab eval RUN RUN…` on real (tiny) runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, rnnlab
from slices import ucr_slice
from torch import nn

from rnnlab.runs.ensemble import Ensemble
from rnnlab.runs.pipeline import run
from rnnlab.runs.restore import restore
from rnnlab.tasks import Addition, AirQuality, ElectricDevices, Sentiment


class Fixed(nn.Module):
    """A model that answers every input with the same output row."""

    def __init__(self, row: list[float]) -> None:
        super().__init__()
        self.row = torch.tensor(row)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.row.expand(x.shape[0], -1)


def test_probabilities_are_averaged_not_logits():
    a, b = Fixed([4.0, 0.0, 0.0]), Fixed([0.0, 1.0, 0.0])
    out = Ensemble([a, b], "probabilities")(torch.zeros(2, 5))
    expected = (a.row.softmax(-1) + b.row.softmax(-1)) / 2
    torch.testing.assert_close(out.exp(), expected.expand(2, -1))
    # Probabilities, not logits: one confident member is outvoted by two that lean the other way,
    # where the mean of the logits would follow the confident one.
    members = [Fixed([10.0, 0.0]), Fixed([0.0, 2.0]), Fixed([0.0, 2.0])]
    assert Ensemble(members, "probabilities")(torch.zeros(1, 5)).argmax(-1).item() == 1
    assert torch.stack([m.row for m in members]).mean(0).argmax().item() == 0


def test_one_member_changes_nothing_and_values_are_averaged():
    logits = Fixed([0.3, -1.0, 2.0])
    torch.testing.assert_close(
        Ensemble([logits], "probabilities")(torch.zeros(3, 1)),
        logits.row.log_softmax(-1).expand(3, -1),
    )
    mean = Ensemble([Fixed([1.0]), Fixed([2.0]), Fixed([6.0])], "mean")(torch.zeros(4, 1))
    torch.testing.assert_close(mean, torch.full((4, 1), 3.0))


def test_bad_ensembles_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([], "mean")
    with pytest.raises(ValueError, match="combine"):
        Ensemble([Fixed([1.0])], "vote")


@pytest.fixture(scope="module")
def ed_runs(shared_data, tmp_path_factory) -> list[Path]:
    """Three tiny ElectricDevices runs: two seeds of one config, and one with other inputs."""
    tmp = tmp_path_factory.mktemp("ensemble")
    train, test = ucr_slice(shared_data, tmp, 600)
    sets = [f"data.train='{train}'", f"data.test='{test}'", "model.hidden=16", "model.layers=1",
            "train.epochs=2", "train.batch_size=32", "train.optimizer='adam'", "train.lr=0.01"]  # fmt: skip
    runs = [
        run(ElectricDevices, ElectricDevices.config(None, [*sets, f"train.seed={seed}"]),
            tmp / f"seed{seed}", "cpu", quiet=True)
        for seed in (0, 1)
    ]  # fmt: skip
    znorm = ElectricDevices.config(None, [*sets, "data.znorm=true"])
    return [*runs, run(ElectricDevices, znorm, tmp / "znorm", "cpu", quiet=True)]


def test_eval_of_two_runs_scores_each_and_their_averaged_probabilities(
    capsys, shared_data, tmp_path, ed_runs
):
    report = tmp_path / "ensemble.json"
    code, stdout, err = rnnlab(
        capsys, "eval", str(ed_runs[0]), str(ed_runs[1]), "--data-dir", str(shared_data),
        "--json", str(report),
    )  # fmt: skip
    assert code == 0, err
    assert "2 runs and their ensemble" in stdout
    result = json.loads(report.read_text())
    for run_dir in ed_runs[:2]:
        saved = json.loads((run_dir / "metrics.json").read_text())
        assert result["runs"][str(run_dir)]["test_accuracy"] == pytest.approx(
            saved["test_accuracy"]
        )
    # The ensemble's accuracy, computed by hand from the two saved models.
    probabilities = []
    for run_dir in ed_runs[:2]:
        task, model = restore(ElectricDevices, run_dir, "cpu")
        task.data_dir = shared_data
        task.load()
        with torch.inference_mode():
            probabilities.append(model(task.splits["test"]["x"]).softmax(-1))
    vote = (probabilities[0] + probabilities[1]).argmax(-1)
    accuracy = (vote == task.splits["test"]["y"]).double().mean().item()
    assert result["ensemble"]["test_accuracy"] == pytest.approx(accuracy)
    assert f"{accuracy:.4g}" in stdout


def test_runs_tested_on_other_data_are_refused(capsys, shared_data, ed_runs):
    code, _, err = rnnlab(
        capsys, "eval", str(ed_runs[0]), str(ed_runs[2]), "--data-dir", str(shared_data)
    )
    assert_one_line_error(code, err, str(ed_runs[2]), "test set differs", str(ed_runs[0]))


def test_runs_of_other_tasks_are_refused(capsys, shared_data, tmp_path, ed_runs):
    aq = AirQuality.config(
        None, ["data.train_rows=600", "data.test_rows=200", "train.epochs=1", "model.hidden=8"]
    )
    aq_run = run(AirQuality, aq, tmp_path / "aq", "cpu", quiet=True, data_dir=shared_data)
    code, _, err = rnnlab(capsys, "eval", str(ed_runs[0]), str(aq_run))
    assert_one_line_error(code, err, str(aq_run), "air-quality", "electric-devices")


def test_tasks_without_an_average_are_refused(capsys, tmp_path):
    cfg = Addition.config(
        None, ["data.examples=200", "data.digits=2", "data.test_examples=50", "model.hidden=8",
               "train.epochs=1"],
    )  # fmt: skip
    runs = [run(Addition, cfg, tmp_path / f"a{k}", "cpu", quiet=True) for k in range(2)]
    code, _, err = rnnlab(capsys, "eval", *map(str, runs))
    assert_one_line_error(code, err, "addition", "cannot be ensembled")


def test_sentiment_seeds_share_a_test_set_unless_split_seed_differs(shared_data):
    def test_inputs(*sets: str) -> torch.Tensor:
        task = Sentiment(Sentiment.config(None, list(sets)), shared_data)
        task.load()
        return task.splits["test"]["x"]

    base = test_inputs("train.seed=0")
    assert torch.equal(base, test_inputs("train.seed=1"))
    assert not torch.equal(base, test_inputs("data.split_seed=1"))


def test_a_run_named_twice_is_refused(capsys, ed_runs):
    """`eval RUN RUN/` would average a run with itself and call it an ensemble of two."""
    code, _, err = rnnlab(capsys, "eval", str(ed_runs[0]), f"{ed_runs[0]}/../{ed_runs[0].name}")
    assert_one_line_error(code, err, "ensemble", "same run", str(ed_runs[0]))


def test_runs_too_many_for_the_terminal_are_numbered_and_listed(
    capsys, shared_data, ed_runs, monkeypatch
):
    from rich.console import Console

    from rnnlab.cli import commands as cli

    monkeypatch.setattr(cli, "out", Console(width=40, markup=False))
    args = ["eval", str(ed_runs[0]), str(ed_runs[1]), "--data-dir", str(shared_data)]
    code, stdout, err = rnnlab(capsys, *args)
    assert code == 0, err
    assert "…" not in stdout  # nothing cut: numbers whole, metric names folded
    assert f"#1: {ed_runs[0]}" in stdout and f"#2: {ed_runs[1]}" in stdout
