"""One time step of each cell: gradients, the lecture GRU against NumPy, gates."""

import numpy as np
import pytest
import torch

from rnnlab.nn.cells import GRUCell, LSTMCell, RNNCell

pytestmark = pytest.mark.usefixtures("float64")  # parity to 1e-9 needs double precision


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


@pytest.mark.parametrize(
    "cell",
    [
        RNNCell(3, 4),
        RNNCell(3, 4, nonlinearity="relu"),
        LSTMCell(3, 4),
        GRUCell(3, 4, variant="lecture"),
        GRUCell(3, 4, variant="cudnn"),
    ],
    ids=["rnn-tanh", "rnn-relu", "lstm", "gru-lecture", "gru-cudnn"],
)
def test_gradcheck_of_each_cell(cell):
    cell = cell.double()
    torch.manual_seed(0)
    x = torch.randn(2, 3, requires_grad=True)
    h = torch.randn(2, 4, requires_grad=True)
    if isinstance(cell, LSTMCell):
        c = torch.randn(2, 4, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, h, c: cell(x, (h, c)), (x, h, c))
    else:
        assert torch.autograd.gradcheck(lambda x, h: cell(x, h), (x, h))


def test_lecture_gru_matches_numpy_implementation_of_the_lecture_equations():
    torch.manual_seed(1)
    cell = GRUCell(3, 5, variant="lecture").double()
    x = torch.randn(4, 3)
    h = torch.randn(4, 5)
    W = cell.weight_hh.detach().numpy()
    U = cell.weight_ih.detach().numpy()
    b = (cell.bias_ih + cell.bias_hh).detach().numpy()
    Wr, Wz, Wh = np.split(W, 3)
    Ur, Uz, Uh = np.split(U, 3)
    br, bz, bh = np.split(b, 3)
    xn, hn = x.numpy(), h.numpy()
    r = _sigmoid(hn @ Wr.T + xn @ Ur.T + br)
    z = _sigmoid(hn @ Wz.T + xn @ Uz.T + bz)
    h_tilde = np.tanh((r * hn) @ Wh.T + xn @ Uh.T + bh)
    expected = (1 - z) * hn + z * h_tilde

    got, gates = cell(x, h, return_gates=True)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(gates["reset"].detach().numpy(), r, atol=1e-9)
    np.testing.assert_allclose(gates["update"].detach().numpy(), z, atol=1e-9)


def test_lecture_and_cudnn_gru_differ_on_the_same_weights():
    torch.manual_seed(2)
    lecture = GRUCell(3, 5, variant="lecture").double()
    cudnn = GRUCell(3, 5, variant="cudnn").double()
    cudnn.load_state_dict(lecture.state_dict())
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    assert (lecture(x, h) - cudnn(x, h)).abs().max() > 1e-3


def test_cudnn_gru_cell_equals_torch_gru_cell():
    torch.manual_seed(3)
    ours = GRUCell(3, 5, variant="cudnn").double()
    theirs = torch.nn.GRUCell(3, 5).double()
    theirs.load_state_dict(ours.state_dict())
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    torch.testing.assert_close(ours(x, h), theirs(x, h), rtol=0, atol=1e-12)


def test_lstm_cell_equals_torch_lstm_cell_and_reports_its_gates():
    torch.manual_seed(4)
    ours = LSTMCell(3, 5).double()
    theirs = torch.nn.LSTMCell(3, 5).double()
    theirs.load_state_dict(ours.state_dict())
    x, h, c = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)
    (h1, c1), gates = ours(x, (h, c), return_gates=True)
    h2, c2 = theirs(x, (h, c))
    torch.testing.assert_close(h1, h2, rtol=0, atol=1e-12)
    torch.testing.assert_close(c1, c2, rtol=0, atol=1e-12)
    assert set(gates) == {"forget", "input", "candidate", "output", "cell"}
    torch.testing.assert_close(gates["forget"] * c + gates["input"] * gates["candidate"], c1)


def test_rnn_cell_is_the_lecture_equation():
    torch.manual_seed(5)
    cell = RNNCell(3, 4, nonlinearity="relu").double()
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    a = cell.bias_ih + cell.bias_hh + h @ cell.weight_hh.T + x @ cell.weight_ih.T
    torch.testing.assert_close(cell(x, h), torch.relu(a))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RNNCell(3, 0), "hidden_size"),
        (lambda: RNNCell(3, 4, nonlinearity="sigmoid"), "nonlinearity"),
        (lambda: GRUCell(3, 4, variant="keras"), "variant"),
    ],
)
def test_bad_cell_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()
