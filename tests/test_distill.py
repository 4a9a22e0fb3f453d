"""Distillation: the student's loss, its soft targets from real (tiny) teacher runs, and bad teachers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import assert_one_line_error, rnnlab
from slices import ucr_slice

from rnnlab.errors import RnnlabError
from rnnlab.runs import teachers
from rnnlab.runs.ensemble import Ensemble
from rnnlab.runs.pipeline import run
from rnnlab.runs.restore import restore
from rnnlab.tasks import AirQuality, ElectricDevices
from rnnlab.training import distillation


def test_the_loss_mixes_labels_and_softened_teachers_as_defined():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    soft = torch.randn(6, 4).softmax(-1)
    hard = F.cross_entropy(logits, labels)
    torch.testing.assert_close(distillation.loss(logits, labels, soft, 0.0, 3.0), hard)
    taught = -(soft * (logits / 3.0).log_softmax(-1)).sum(-1).mean() * 9.0
    torch.testing.assert_close(distillation.loss(logits, labels, soft, 1.0, 3.0), taught)
    torch.testing.assert_close(
        distillation.loss(logits, labels, soft, 0.25, 3.0), 0.75 * hard + 0.25 * taught
    )


def test_label_smoothing_spreads_the_hard_targets_as_defined():
    """Target (1 - e) on the label plus e spread evenly over the K classes."""
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    soft = torch.randn(6, 4).softmax(-1)
    target = F.one_hot(labels, 4) * 0.8 + 0.2 / 4
    smoothed = -(target * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(distillation.loss(logits, labels, soft, 0.0, 3.0, 0.2), smoothed)
    taught = distillation.loss(logits, labels, soft, 1.0, 3.0)
    torch.testing.assert_close(
        distillation.loss(logits, labels, soft, 0.5, 3.0, 0.2), 0.5 * smoothed + 0.5 * taught
    )


def test_a_student_that_answers_like_its_teachers_gets_no_gradient_from_them():
    soft = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    logits = (4.0 * soft.log() + 1.5).requires_grad_()  # softmax(logits / 4) == soft
    distillation.loss(logits, torch.tensor([1, 0]), soft, 1.0, 4.0).backward()
    torch.testing.assert_close(logits.grad, torch.zeros_like(soft), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def tiny(shared_data, tmp_path_factory) -> tuple[Path, list[str]]:
    """A study directory holding two tiny ElectricDevices runs, and the settings they share."""
    tmp = tmp_path_factory.mktemp("distill")
    train, test = ucr_slice(shared_data, tmp, 600)
    sets = [f"data.train='{train}'", f"data.test='{test}'", "model.hidden=16", "model.layers=1",
            "train.epochs=2", "train.batch_size=32", "train.optimizer='adam'", "train.lr=0.01"]  # fmt: skip
    for seed in (0, 1):
        cfg = ElectricDevices.config(None, [*sets, f"train.seed={seed}"])
        run(ElectricDevices, cfg, tmp / "teachers" / f"seed{seed}", "cpu", quiet=True)
    return tmp / "teachers", sets


def test_soft_targets_are_the_teachers_mean_probabilities_softened(tiny):
    study, sets = tiny
    task = ElectricDevices(ElectricDevices.config(None, sets))
    task.load()
    runs = teachers.teacher_runs([str(study)])
    assert runs == [study / "seed0", study / "seed1"]
    members = [restore(ElectricDevices, r, "cpu")[1] for r in runs]
    with torch.inference_mode():
        log_p = Ensemble(members, "probabilities")(task.splits["train"]["x"])
    for temperature in (1.0, 4.0):
        soft = teachers.soft_targets(task, runs, temperature)
        torch.testing.assert_close(soft, (log_p / temperature).softmax(-1))
    # A higher temperature spreads the teachers' confidence: the top class gets less.
    assert (soft.max(-1).values < log_p.exp().max(-1).values).all()


def test_a_student_trains_from_a_study_and_evaluates_without_it(
    capsys, shared_data, tiny, tmp_path
):
    study, sets = tiny
    out = tmp_path / "student"
    args = [a for s in sets for a in ("--set", s)]
    code, _, err = rnnlab(
        capsys, "run", "electric-devices", "--out", str(out), *args,
        "--set", f"train.teachers=['{study}']", "--set", "train.distill_weight=0.5",
    )  # fmt: skip
    assert code == 0, err
    # The study is named as the runs it stands for.
    assert f"taught by 2 runs (weight 0.5, temperature 4.0): {study}/seed0, {study}/seed1" in err
    assert f'"{study}"' in (out / "config.toml").read_text()
    saved = json.loads((out / "metrics.json").read_text())
    # The student is one model like any other: eval rebuilds it with no teacher in sight.
    code, stdout, err = rnnlab(capsys, "eval", str(out), "--data-dir", str(shared_data))
    assert code == 0, err
    assert f"{saved['test_accuracy']:.4f}" in stdout


@pytest.mark.parametrize(
    ("teachers", "names"),
    [
        ("/no/such/run", ["train.teachers", "/no/such/run", "not a directory"]),
        ("EMPTY", ["train.teachers", "no trained run"]),
        ("ZNORM", ["train.teachers", "data.znorm", "same data"]),
        ("AQ", ["train.teachers", "'air-quality'", "'electric-devices'"]),
    ],
)
def test_bad_teachers_give_one_line_errors(capsys, shared_data, tiny, tmp_path, teachers, names):
    _, sets = tiny
    if teachers == "EMPTY":
        teachers = str(tmp_path)
    elif teachers == "ZNORM":  # teachers that read z-normalised days, for a student that does not
        cfg = ElectricDevices.config(None, [*sets, "data.znorm=true", "train.epochs=1"])
        teachers = str(run(ElectricDevices, cfg, tmp_path / "znorm", "cpu", quiet=True))
    elif teachers == "AQ":
        aq = AirQuality.config(
            None, ["data.train_rows=600", "data.test_rows=200", "train.epochs=1", "model.hidden=8"]
        )
        teachers = str(
            run(AirQuality, aq, tmp_path / "aq", "cpu", quiet=True, data_dir=shared_data)
        )
    args = [a for s in sets for a in ("--set", s)]
    out = tmp_path / "student"
    code, _, err = rnnlab(
        capsys, "run", "electric-devices", "--out", str(out), *args,
        "--set", f"train.teachers=['{teachers}']",
    )  # fmt: skip
    assert_one_line_error(code, err, *names)
    assert not out.exists()


@pytest.mark.parametrize(
    ("setting", "names"),
    [
        ("train.distill_weight=1.5", ["train.distill_weight", "[0, 1]"]),
        ("train.distill_temperature=0", ["train.distill_temperature", "> 0"]),
    ],
)
def test_bad_distillation_settings_give_one_line_errors(capsys, setting, names):
    code, _, err = rnnlab(capsys, "run", "electric-devices", "--set", setting)
    assert_one_line_error(code, err, *names)


def test_tasks_that_do_not_classify_have_no_teachers(capsys):
    code, _, err = rnnlab(capsys, "run", "air-quality", "--set", "train.teachers=['runs']")
    assert_one_line_error(code, err, "train.teachers")


def test_a_teacher_named_twice_is_refused(tmp_path):
    """A study and one of its runs: that run would teach with double weight."""
    (tmp_path / "study" / "a").mkdir(parents=True)
    (tmp_path / "study" / "a" / "model.json").write_text("{}")
    with pytest.raises(RnnlabError, match=r"train\.teachers: .* same run as"):
        teachers.teacher_runs([str(tmp_path / "study"), str(tmp_path / "study" / "a")])
