"""Recurrent: engine parity, ragged lengths, directions, dropout and argument checks."""

import itertools

import pytest
import torch

from rnnlab import Recurrent

pytestmark = pytest.mark.usefixtures("float64")  # parity to 1e-9 needs double precision


CELLS = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
    ("lstm", {}),
    ("gru", {"gru_variant": "cudnn"}),
]
CASES = list(itertools.product(CELLS, (1, 2), (False, True), (False, True)))


def _ids(case):
    (cell, kw), layers, bi, ragged = case
    name = cell + ("-" + next(iter(kw.values())) if kw else "")
    return f"{name}-l{layers}-{'bi' if bi else 'uni'}-{'ragged' if ragged else 'full'}"


def _run(layer, engine, x, lengths):
    layer.engine = engine
    layer.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    out, state = layer(x, lengths)
    states = state if isinstance(state, tuple) else (state,)
    # A scalar loss that touches every output and every final state.
    loss = (out * torch.linspace(-1, 1, out.shape[-1])).sum() + sum((s**2).sum() for s in states)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    return out.detach(), [s.detach() for s in states], x.grad, grads


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_reference_and_fused_engines_agree_on_outputs_states_and_gradients(case):
    (cell, kw), layers, bidirectional, ragged = case
    torch.manual_seed(0)
    layer = Recurrent(4, 5, cell=cell, layers=layers, bidirectional=bidirectional, **kw)
    x = torch.randn(3, 7, 4)
    lengths = torch.tensor([7, 2, 5]) if ragged else None
    ref = _run(layer, "reference", x, lengths)
    fused = _run(layer, "fused", x, lengths)
    torch.testing.assert_close(ref[0], fused[0], rtol=0, atol=1e-9)
    for a, b in zip(ref[1], fused[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    torch.testing.assert_close(ref[2], fused[2], rtol=0, atol=1e-9)
    assert ref[3].keys() == fused[3].keys()
    for name in ref[3]:
        torch.testing.assert_close(ref[3][name], fused[3][name], rtol=0, atol=1e-9, msg=name)


@pytest.mark.parametrize("engine", ["reference", "fused"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_padding_invariance_a_sequence_ignores_longer_neighbours(engine, cell):
    torch.manual_seed(1)
    variant = {"gru_variant": "cudnn"} if engine == "fused" and cell == "gru" else {}
    layer = Recurrent(
        2, 3, cell=cell, layers=2, bidirectional=True, engine=engine, **variant
    ).eval()
    short = torch.randn(1, 4, 2)
    alone, alone_state = layer(short, torch.tensor([4]))
    batch = torch.randn(3, 9, 2)
    batch[1, :4] = short[0]
    out, state = layer(batch, torch.tensor([9, 4, 6]))
    torch.testing.assert_close(out[1, :4], alone[0], rtol=0, atol=1e-12)
    assert out[1, 4:].abs().max() == 0, "positions past the end must be zero"
    for a, b in zip(
        state if isinstance(state, tuple) else (state,),
        alone_state if isinstance(alone_state, tuple) else (alone_state,),
        strict=True,
    ):
        torch.testing.assert_close(a[:, 1], b[:, 0], rtol=0, atol=1e-12)


def test_backward_direction_starts_at_each_sequence_end():
    torch.manual_seed(2)
    layer = Recurrent(2, 3, cell="gru", gru_variant="lecture", bidirectional=True)  # reference
    x = torch.randn(1, 5, 2)
    out, _ = layer(x, torch.tensor([3]))
    # The backward half at t=0 is a function of x[0..2] only: the same as running on x[:, :3].
    out3, _ = layer(x[:, :3])
    torch.testing.assert_close(out[0, :3], out3[0], rtol=0, atol=1e-12)


def test_lecture_gru_runs_on_reference_engine_and_differs_from_cudnn():
    torch.manual_seed(3)
    lecture = Recurrent(2, 3, cell="gru", gru_variant="lecture")
    cudnn = Recurrent(2, 3, cell="gru", gru_variant="cudnn")
    cudnn.load_state_dict(lecture.state_dict())
    assert lecture.resolved_engine() == "reference"
    assert cudnn.resolved_engine() == "fused"
    x = torch.randn(2, 6, 2)
    assert (lecture(x)[0] - cudnn(x)[0]).abs().max() > 1e-3


def test_initial_state_is_used_and_final_state_continues_the_sequence():
    torch.manual_seed(4)
    layer = Recurrent(2, 3, cell="lstm", layers=2)
    x = torch.randn(2, 8, 2)
    whole, _ = layer(x)
    first, state = layer(x[:, :5])
    second, _ = layer(x[:, 5:], state=state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


def test_recurrent_dropout_uses_one_mask_per_sequence_and_is_off_at_eval():
    torch.manual_seed(5)
    layer = Recurrent(2, 4, cell="lstm", recurrent_dropout=0.5)
    assert layer.resolved_engine() == "reference"
    x = torch.randn(3, 6, 2)
    layer.eval()
    a, _ = layer(x)
    b, _ = layer(x)
    torch.testing.assert_close(a, b)
    layer.engine = "reference"
    layer.recurrent_dropout = 0.0
    torch.testing.assert_close(layer(x)[0], a)  # eval == no dropout at all
    layer.recurrent_dropout = 0.5
    layer.train()
    assert (layer(x)[0] - a).abs().max() > 1e-6


@pytest.mark.parametrize("engine", ["fused", "reference"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_drop_runs_on_masked_recurrent_matrices(engine, cell):
    torch.manual_seed(7)
    shape = {"cell": cell, "layers": 2, "bidirectional": True, "gru_variant": "cudnn"}
    layer = Recurrent(2, 4, **shape, weight_drop=0.5, engine=engine)
    x, lengths = torch.randn(3, 6, 2), torch.tensor([6, 2, 4])
    torch.manual_seed(8)
    trained, _ = layer(x, lengths)
    # The same masks, drawn in the same order, applied by hand to a copy run without them.
    masked = Recurrent(2, 4, **shape)
    masked.load_state_dict(layer.state_dict())
    torch.manual_seed(8)
    with torch.no_grad():
        for name, w in masked.rnn.named_parameters():
            if name.startswith("weight_hh"):
                w.copy_(torch.nn.functional.dropout(w, 0.5))
    torch.testing.assert_close(trained, masked.eval()(x, lengths)[0])
    # Dropped entries get no gradient; at evaluation the matrices are used whole.
    trained.sum().backward()
    grad = layer.rnn.weight_hh_l0.grad
    assert torch.all(grad[masked.rnn.weight_hh_l0 == 0] == 0) and grad.abs().sum() > 0
    layer.eval()
    plain = Recurrent(2, 4, **shape)
    plain.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x, lengths)[0], plain.eval()(x, lengths)[0])


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(6)
    layer = Recurrent(2, 4, cell="rnn", layers=2, dropout=0.5)
    x = torch.randn(3, 6, 2)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    layer.train()
    assert (layer(x)[0] - layer(x)[0]).abs().max() > 0


def test_gates_have_one_entry_per_layer_and_direction_and_match_outputs():
    torch.manual_seed(7)
    layer = Recurrent(2, 3, cell="lstm", layers=2, bidirectional=True)
    x = torch.randn(2, 5, 2)
    gates = layer.gates(x, torch.tensor([5, 3]))
    assert len(gates) == 4
    assert gates[0]["forget"].shape == (2, 5, 3)
    out, _ = layer(x, torch.tensor([5, 3]))
    h_last_layer_fwd = gates[2]["output"] * torch.tanh(gates[2]["cell"])
    torch.testing.assert_close(h_last_layer_fwd, out[..., :3])


def test_forget_bias_sets_the_lstm_forget_gate_bias():
    layer = Recurrent(2, 3, cell="lstm", forget_bias=1.0)
    b = layer.rnn.bias_ih_l0 + layer.rnn.bias_hh_l0
    assert torch.all(b[3:6] == 1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cell": "transformer"}, "cell"),
        ({"hidden_size": 0}, "hidden"),
        ({"layers": 0}, "layers"),
        ({"cell": "gru", "gru_variant": "lecture", "engine": "fused"}, "engine"),
        ({"recurrent_dropout": 0.2, "engine": "fused"}, "engine"),
        ({"engine": "cuda"}, "engine"),
        ({"dropout": 1.5}, "dropout"),
        ({"weight_drop": 1.0}, "weight_drop"),
        ({"cell": "lstm", "nonlinearity": "relu"}, "nonlinearity"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(kwargs, match):
    args = {"input_size": 2, "hidden_size": 3} | kwargs
    with pytest.raises(ValueError, match=match):
        Recurrent(**args)


@pytest.mark.parametrize(
    ("lengths", "state", "match"),
    [
        (torch.tensor([6, 2]), None, "lengths"),
        (torch.tensor([0, 2]), None, "lengths"),
        (torch.tensor([2]), None, "lengths"),
        (None, torch.zeros(1, 2, 3), "state"),
        (None, (torch.zeros(1, 2, 4), torch.zeros(1, 2, 3)), "state"),
    ],
)
def test_bad_forward_inputs_raise_value_error(lengths, state, match):
    layer = Recurrent(2, 3, cell="lstm")
    with pytest.raises(ValueError, match=match):
        layer(torch.zeros(2, 5, 2), lengths, state)


def test_wrong_feature_size_is_reported():
    with pytest.raises(ValueError, match=r"x must be shaped"):
        Recurrent(2, 3)(torch.zeros(2, 5, 3))


def test_keras_init_is_glorot_orthogonal_with_unit_forget_bias():
    layer = Recurrent(3, 4, cell="lstm", layers=2, init="keras")
    w_hh = layer.rnn.weight_hh_l1
    torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(4), atol=1e-6, rtol=0)
    limit = (6 / (3 + 16)) ** 0.5
    assert layer.rnn.weight_ih_l0.abs().max() <= limit
    b = layer.rnn.bias_ih_l0 + layer.rnn.bias_hh_l0
    assert torch.all(b[4:8] == 1.0) and torch.all(b[:4] == 0) and torch.all(b[8:] == 0)
