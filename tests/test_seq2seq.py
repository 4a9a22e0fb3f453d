"""The encoder–decoder family: decoders, teacher forcing, attention, greedy and beam search."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from rnnlab.data.addition import encode, format_answer, format_question
from rnnlab.nn.seq2seq import Seq2Seq, beam_search, greedy, length_penalty
from rnnlab.tasks.metrics import exact_match
from rnnlab.training.batches import TensorBatches
from rnnlab.training.config import TrainConfig
from rnnlab.training.trainer import Trainer

A, B, EOS, BOS = 0, 1, 2, 3  # the toy's output tokens and its start symbol
FEEDBACK = [("peeking", "additive"), ("attention", "additive"), ("attention", "dot"),
            ("attention", "general")]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is fastest, and immune to other processes on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def markov(table: dict[int, tuple[float, float, float]]):
    """A toy decoder whose next-token probabilities (a, b, EOS) depend on the previous token only."""
    log_p = torch.full((4, 3), -30.0)
    for previous, probs in table.items():
        log_p[previous] = torch.tensor(probs).log()

    def step(previous: Tensor, state: dict) -> tuple[Tensor, dict, None]:
        return log_p[previous], state, None

    return step


# BOS -> a .5, b .4, EOS .1; after a: a .4, b .35, EOS .25; after b: EOS .9.
TOY = markov({BOS: (0.5, 0.4, 0.1), A: (0.4, 0.35, 0.25), B: (0.05, 0.05, 0.9)})


def _model(decoder: str, attention: str = "additive", eos: int | None = 2, **kw) -> Seq2Seq:
    torch.manual_seed(0)
    recurrent = {"hidden": 12, "cell": "lstm", "layers": 2, "bidirectional": True, **kw}
    return Seq2Seq(
        9, 6, embedding=8, decoder=decoder, attention=attention, decoder_layers=2, eos=eos,
        **recurrent,
    ).eval()  # fmt: skip


def _batch(n: int = 6, steps: int = 7) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    source = torch.randint(0, 9, (n, steps), generator=g)
    lengths = torch.randint(1, steps + 1, (n,), generator=g)
    lengths[0] = steps
    return source, lengths, torch.randint(0, 6, (n, 5), generator=g)


def test_beam_search_returns_the_known_best_sequences_in_order():
    start = torch.full((1,), BOS)
    beams = beam_search(TOY, {}, start, max_len=2, beam_size=3, eos=EOS)
    # b EOS = .4 * .9 = .36 beats a a = .2 and a b = .175; greedy goes for a (.5) and ends at a a.
    assert beams.tokens[0].tolist() == [[B, EOS], [A, A], [A, B]]
    expected = torch.tensor([0.36, 0.2, 0.175]).log()
    torch.testing.assert_close(beams.log_probs[0], expected)
    assert beams.lengths[0].tolist() == [2, 2, 2]
    found = greedy(TOY, {}, start, max_len=2, eos=EOS)
    assert found.tokens[0].tolist() == [A, A]
    torch.testing.assert_close(found.log_probs, torch.tensor([0.2]).log())


def test_beam_search_of_a_batch_treats_each_example_alone():
    start = torch.full((3,), BOS)
    beams = beam_search(TOY, {}, start, max_len=2, beam_size=2, eos=EOS)
    assert all(beams.tokens[i].tolist() == [[B, EOS], [A, A]] for i in range(3))


def test_length_normalisation_can_prefer_the_longer_hypothesis():
    # EOS alone: .4 (1 token); a EOS: .6 * .55 = .33 (2 tokens).
    step = markov({BOS: (0.6, 1e-6, 0.4), A: (0.45, 1e-6, 0.55)})
    start = torch.full((1,), BOS)
    plain = beam_search(step, {}, start, max_len=2, beam_size=2, eos=EOS, alpha=0.0)
    assert plain.tokens[0, 0].tolist() == [EOS, EOS] and plain.lengths[0, 0] == 1
    normalised = beam_search(step, {}, start, max_len=2, beam_size=2, eos=EOS, alpha=2.0)
    assert normalised.tokens[0, 0].tolist() == [A, EOS]
    penalty = length_penalty(normalised.lengths, 2.0).float()
    torch.testing.assert_close(normalised.scores, normalised.log_probs / penalty)
    assert math.isclose(float(normalised.log_probs[0, 0]), math.log(0.33), rel_tol=1e-5)


@pytest.mark.parametrize(("decoder", "attention"), [("plain", "additive"), *FEEDBACK])
def test_beam_of_one_is_greedy_exactly(decoder, attention):
    model = _model(decoder, attention)
    source, lengths, _ = _batch()
    with torch.no_grad():
        found = model.greedy(source, 6, lengths)
        beams = model.beam_search(source, 6, beam_size=1, alpha=0.7, lengths=lengths)
    assert torch.equal(beams.tokens[:, 0], found.tokens)
    assert torch.equal(beams.log_probs[:, 0], found.log_probs)
    if found.attention is not None:
        assert torch.equal(beams.attention[:, 0], found.attention)


def test_wider_beams_never_find_less_probable_best_hypotheses():
    model = _model("attention", "general")
    source, lengths, _ = _batch()
    with torch.no_grad():
        best = [model.beam_search(source, 5, k, lengths=lengths).log_probs[:, 0] for k in (1, 4)]
    assert (best[1] >= best[0] - 1e-5).all()


@pytest.mark.parametrize("attention", ["additive", "dot", "general"])
def test_attention_weights_sum_to_one_and_ignore_padding(attention):
    model = _model("attention", attention)
    source, lengths, target = _batch()
    with torch.no_grad():
        logits, weights = model(source, target, lengths)
        decoded = model.greedy(source, 5, lengths)
        # Whatever sits in the padding, nothing changes.
        padded = source.clone()
        padded[torch.arange(source.shape[1]) >= lengths[:, None]] = 8
        logits_padded, _ = model(padded, target, lengths)
    for w in (weights, decoded.attention):
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2]))
        beyond = torch.arange(source.shape[1]) >= lengths[:, None]  # (B, S)
        assert (w.masked_select(beyond[:, None].expand_as(w)) == 0).all()
    torch.testing.assert_close(logits, logits_padded)


@pytest.mark.parametrize(("decoder", "attention"), FEEDBACK)
def test_teacher_forcing_one_feeds_the_true_previous_token(decoder, attention):
    model = _model(decoder, attention)
    source, lengths, target = _batch()
    with torch.no_grad():
        logits, _ = model(source, target, lengths, teacher_forcing=1.0)
        # By hand: start symbol, then target[t-1].
        state = model.decoder.start(model.encode(source, lengths))
        previous, by_hand = torch.full_like(target[:, 0], model.bos), []
        for t in range(target.shape[1]):
            step_logits, state, _ = model.decoder.step(previous, state)
            by_hand.append(step_logits)
            previous = target[:, t]
        # Changing target[:, 2] changes the logits from step 3 on, not before.
        changed = target.clone()
        changed[:, 2] = (changed[:, 2] + 1) % 6
        logits_changed, _ = model(source, changed, lengths, teacher_forcing=1.0)
    torch.testing.assert_close(logits, torch.stack(by_hand, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[:, :3], logits_changed[:, :3])
    assert not torch.allclose(logits[:, 3:], logits_changed[:, 3:])


@pytest.mark.parametrize(("decoder", "attention"), FEEDBACK)
def test_teacher_forcing_zero_feeds_the_models_own_predictions(decoder, attention):
    model = _model(decoder, attention, eos=None)
    source, lengths, target = _batch()
    with torch.no_grad():
        logits, _ = model(source, target, lengths, teacher_forcing=0.0)
        other, _ = model(source, torch.zeros_like(target), lengths, teacher_forcing=0.0)
        found = model.greedy(source, target.shape[1], lengths)
    torch.testing.assert_close(logits, other)  # the targets are never read
    assert torch.equal(logits.argmax(-1), found.tokens)  # it is greedy decoding
    best = logits.log_softmax(-1).max(-1).values.sum(1)
    torch.testing.assert_close(best, found.log_probs)


def test_teacher_forcing_half_mixes_both_inputs():
    model = _model("peeking", eos=None)
    source, lengths, target = _batch(64)
    with torch.no_grad():
        forced, _ = model(source, target, lengths, teacher_forcing=1.0)
        free, _ = model(source, target, lengths, teacher_forcing=0.0)
        torch.manual_seed(3)
        mixed, _ = model(source, target, lengths, teacher_forcing=0.5)
    like_forced = torch.isclose(mixed[:, 1], forced[:, 1]).all(-1)
    like_free = torch.isclose(mixed[:, 1], free[:, 1]).all(-1)
    assert (like_forced | like_free).all()
    assert 0.2 < like_forced.double().mean() < 0.8


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_decoders_run_with_every_cell(cell):
    for decoder, attention in [("plain", "additive"), *FEEDBACK]:
        model = _model(decoder, attention, cell=cell)
        source, lengths, target = _batch()
        logits, _ = model(source, target, lengths, teacher_forcing=0.5)
        assert logits.shape == (6, 5, 6)
        assert model.beam_search(source, 4, 3, lengths=lengths).tokens.shape[:2] == (6, 3)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="decoder"):
        Seq2Seq(9, 6, hidden=4, decoder="transformer")
    with pytest.raises(ValueError, match="eos"):
        Seq2Seq(9, 6, hidden=4, eos=6)


def test_a_tiny_model_learns_one_digit_addition():
    questions, answers = zip(
        *[(format_question(a, b, 1, True), format_answer(a + b, 1)) for a in range(10)
          for b in range(10)], strict=True
    )  # fmt: skip
    x, y = encode(questions), encode(answers)
    torch.manual_seed(0)
    model = Seq2Seq(12, 12, hidden=48, embedding=12, decoder="plain")
    cfg = TrainConfig(epochs=60, batch_size=10, lr=0.01, monitor="val_exact_match")

    def loss(m, batch, state):
        logits, _ = m(batch["x"], batch["y"])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["y"].flatten()), None

    def evaluate(m):
        return {"val_" + k: v for k, v in exact_match(m.greedy(x, 2).tokens, y).items()}

    trainer = Trainer(model, cfg, loss, evaluate, torch.device("cpu"), quiet=True)
    result = trainer.fit(TensorBatches({"x": x, "y": y}, cfg.batch_size))
    assert result.best_value == 1.0
