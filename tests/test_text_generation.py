"""Task 4, character-level text generation: builders, model, sampling, and the CLI end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import assert_one_line_error, rnnlab

from rnnlab.data.text import CharVocab
from rnnlab.errors import RnnlabError
from rnnlab.nn import CharLM
from rnnlab.tasks.sampling import generate
from rnnlab.tasks.text_generation import TextGeneration
from rnnlab.training.batches import StreamBatches
from rnnlab.training.config import TrainConfig
from rnnlab.training.trainer import Trainer

VERSE = "merry are the bells,\nand merry would they ring;\n"


def _tiny_text(tmp_path: Path, repeats: int = 60) -> Path:
    path = tmp_path / "verse.txt"
    path.write_text(VERSE * repeats, encoding="utf-8")
    return path


def _task(path: Path, *sets: str) -> TextGeneration:
    task = TextGeneration(TextGeneration.config(overrides=(f"data.path='{path}'", *sets)))
    task.load()
    return task


def test_windows_pair_each_window_with_the_character_after_it(tmp_path):
    task = _task(_tiny_text(tmp_path), "data.maxlen=7", "data.step=3")
    text = (VERSE * 60).lower()
    ids = task.vocab.encode(text[: int(len(text) * 0.9)])
    x, y = task.splits["train"]["x"], task.splits["train"]["y"]
    assert x.shape[1] == 7 and len(x) == len(y) == (len(ids) - 7 + 2) // 3
    for i in (0, 1, len(x) - 1):
        assert torch.equal(x[i], ids[3 * i : 3 * i + 7]) and y[i] == ids[3 * i + 7]


def test_stream_chunks_continue_row_by_row_and_targets_are_the_next_character():
    ids = torch.arange(1000)
    batches = StreamBatches(ids, batch_size=4, bptt=10)
    assert batches.stateful
    for epoch in (0, 1):
        chunks = list(batches.epoch(epoch))
        assert len(chunks) <= len(batches)
        x = torch.cat([c["x"] for c in chunks], dim=1)  # (4, L)
        y = torch.cat([c["y"] for c in chunks], dim=1)
        assert torch.equal(y, x + 1)  # every target is the character after its input
        # Row b continues where row b - 1 stopped: the streams tile one stretch of the text.
        assert torch.equal(x[1:, 0], y[:-1, -1])
        assert all(c["x"].shape[1] <= 10 for c in chunks)


def test_streams_longer_than_the_text_are_an_error_naming_the_batch_size():
    with pytest.raises(RnnlabError, match=r"train\.batch_size"):
        StreamBatches(torch.arange(50), batch_size=64, bptt=10)


@pytest.fixture(scope="module")
def overfit() -> tuple[CharLM, CharVocab, float]:
    """A small LSTM trained on a repeated verse with truncated BPTT until it knows it by heart."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: a second thread only adds contention
    torch.manual_seed(0)
    vocab = CharVocab.of(VERSE)
    ids = vocab.encode(VERSE * 40)
    model = CharLM(len(vocab), hidden=48)
    cfg = TrainConfig(epochs=25, batch_size=8, lr=0.02, clip_norm=1.0, monitor="val_loss")

    def loss(m, batch, state):
        logits, state = m(batch["x"], state)
        return F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten()), state

    def recital(m):  # the whole text read from a zero state, as generation starts
        logits, _ = m(ids[None, :-1])
        return {"val_loss": float(F.cross_entropy(logits[0], ids[1:]))}

    trainer = Trainer(model, cfg, loss, recital, torch.device("cpu"), quiet=True)
    # The carried state is what makes the verse learnable from 20-character chunks: a line's
    # position in the verse is only known from the lines before it.
    result = trainer.fit(StreamBatches(ids, batch_size=8, bptt=20))
    torch.set_num_threads(threads)
    return model.eval(), vocab, result.best_value


def test_model_overfits_a_repeated_verse(overfit):
    _, _, final_loss = overfit
    assert final_loss < 0.05


def test_greedy_generation_carries_the_state_and_recites_the_verse(overfit):
    model, vocab, _ = overfit
    prime = "merry are the bells,\n"
    (greedy,) = generate(model, vocab, [0.0], prime=prime, length=len(VERSE) * 2)
    assert prime + greedy.text == (VERSE * 4)[: len(prime) + len(VERSE) * 2]
    (top1,) = generate(model, vocab, [1.0], prime=prime, length=40, top_k=1, seed=5)
    assert top1.text == greedy.text[:40]


def test_generating_n_characters_costs_n_single_steps(overfit, monkeypatch):
    model, vocab, _ = overfit
    steps = []
    forward = model.rnn.forward
    monkeypatch.setattr(
        model.rnn, "forward", lambda x, *a, **k: steps.append(x.shape[1]) or forward(x, *a, **k)
    )
    generate(model, vocab, [0.5, 1.0], prime="merry", length=40)
    assert steps == [5] + [1] * 39  # the prime once, then one step per new character


def test_windows_truncated_backprop_reads_the_whole_window(tmp_path):
    full = _task(_tiny_text(tmp_path), "train.bptt=50")
    cut = _task(_tiny_text(tmp_path), "train.bptt=7")
    torch.manual_seed(0)
    model = full.build_model()
    batch = {k: t[:16] for k, t in full.splits["train"].items()}
    # Same forward pass (the start of each window is read without a graph, not skipped).
    assert torch.allclose(full.loss(model, batch, None)[0], cut.loss(model, batch, None)[0])


def test_generation_with_a_seed_is_reproducible(overfit):
    model, vocab, _ = overfit
    first = generate(model, vocab, [0.8, 2.0], length=120, seed=7)
    again = generate(model, vocab, [0.8, 2.0], length=120, seed=7)
    other = generate(model, vocab, [0.8, 2.0], length=120, seed=8)
    assert [s.text for s in first] == [s.text for s in again]
    assert [s.text for s in first] != [s.text for s in other]
    assert first[0].prime == again[0].prime and len(first[0].prime) == 50  # the lab's random seed


def test_generation_honours_length_and_line_limits(overfit):
    model, vocab, _ = overfit
    for sample in generate(model, vocab, [0.2, 1.0, 3.0], length=33, seed=1):
        assert len(sample.text) == 33
    for sample in generate(model, vocab, [0.0, 1.0], prime="merry", length=500, lines=3):
        assert sample.text.count("\n") == 3 and sample.text.endswith("\n")


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"prime": "merry #1"}, ["'#'", "'1'", "vocabulary"]),
        ({"prime": ""}, ["prime is empty"]),
        ({"length": 0}, ["length", ">= 1"]),
        ({"temperatures": [-1.0]}, ["temperatures", ">= 0"]),
        ({"top_k": 0}, ["top_k"]),
    ],
)
def test_bad_generation_arguments_are_one_line_errors(overfit, kwargs, names):
    model, vocab, _ = overfit
    with pytest.raises(RnnlabError) as info:
        generate(model, vocab, **kwargs)
    assert "\n" not in str(info.value)
    for name in names:
        assert name in str(info.value)


def _run(capsys, tmp_path, name, *sets, data_dir=None):
    out = tmp_path / name
    args = ["run", "text-generation", "--quiet", "--device", "cpu", "--out", str(out)]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    for s in ("train.threads=1", *sets):
        args += ["--set", s]
    code, _stdout, stderr = rnnlab(capsys, *args)
    assert code == 0, stderr
    return out


def test_windows_run_writes_samples_and_generate_continues_a_prime(capsys, tmp_path):
    path = _tiny_text(tmp_path)
    out = _run(
        capsys, tmp_path, "windows", f"data.path='{path}'", "model.hidden=16",
        "train.epochs=2", "train.batch_size=64", "train.sample_every=1", "train.sample_length=60",
    )  # fmt: skip
    assert {"samples.txt", "history.csv", "metrics.json", "model.safetensors"} <= {
        p.name for p in out.iterdir()
    }
    samples = (out / "samples.txt").read_text()
    assert samples.count("epoch ") == 2
    assert all(f"--- temperature {t}\n" in samples for t in ("0.2", "0.4", "0.8", "1"))
    with open(out / "history.csv") as f:
        assert {"train_loss", "val_bpc"} <= next(csv.DictReader(f)).keys()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["test_bpc"] < 6
    assert metrics["test_bpc"] == metrics["val_bpc"]  # the lab's: no test text of its own

    args = ["generate", str(out), "--prime", "Merry", "--length", "30", "--seed", "3"]
    code, first, stderr = rnnlab(capsys, *args, "--temperature", "0.5", "--temperature", "0")
    assert code == 0, stderr
    assert stderr.count("--- temperature") == 2
    assert first.startswith("merry") and len(first.splitlines()[0]) >= 5
    code, again, _ = rnnlab(capsys, *args, "--temperature", "0.5", "--temperature", "0")
    assert again == first

    code, _, err = rnnlab(capsys, "generate", str(out), "--prime", "merry #1")
    assert_one_line_error(code, err, "'#'", "'1'", "vocabulary")


def test_stream_run_on_poetry1_beats_the_unigram_rate(capsys, tmp_path, shared_data):
    out = _run(
        capsys, tmp_path, "stream", "data.mode='stream'", "model.hidden=32", "train.epochs=1",
        "train.batch_size=64", "train.bptt=32", "train.lr=0.02", "train.sample_every=5",
        "data.test_fraction=0.05", data_dir=shared_data,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    # The character frequencies alone give about 4.1 bits (unigram_bpc, on the test text).
    assert metrics["test_bpc"] < 4.0 and metrics["test_bpc"] < metrics["unigram_bpc"]
    assert metrics["test_bpc"] != metrics["val_bpc"]  # a text of its own, after the validation's
    assert (out / "samples.txt").exists()  # the last epoch always samples


def test_generate_needs_a_text_generation_run(capsys, tmp_path):
    code, _, err = rnnlab(capsys, "generate", str(tmp_path))
    assert_one_line_error(code, err, "model.json")


@pytest.mark.parametrize(
    ("sets", "names"),
    [
        (["data.mode='chunks'"], ["data.mode", "'stream'"]),
        (["train.bptt=0"], ["train.bptt", ">= 1"]),
        (["model.bidirectional=true"], ["model.bidirectional"]),
        (["data.mode='stream'", "train.batch_size=100000"], ["train.batch_size"]),
        (["data.test_fraction=0.95"], ["data.val_fraction + data.test_fraction", "(0, 1)"]),
        (["data.test_fraction=1.5"], ["data.test_fraction", "(0, 1)"]),
    ],
)
def test_bad_text_generation_configs_are_one_line_errors(capsys, tmp_path, sets, names):
    args = ["run", "text-generation", "--quiet", "--out", str(tmp_path / "r")]
    args += ["--set", f"data.path='{_tiny_text(tmp_path)}'"]
    for s in sets:
        args += ["--set", s]
    code, _, err = rnnlab(capsys, *args)
    assert_one_line_error(code, err, *names)
