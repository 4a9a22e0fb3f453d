"""One time step of each recurrent cell, as the lecture writes it.

Every step is a pure function of the input projection ``gi = U x_t + b_i``, already computed (so a
layer projects all time steps in one big matmul and loops only over the recurrent part), and the
state, a tuple: ``(h,)`` or, for the LSTM, ``(h, c)``. It returns the new state and its gates, for
plots. Weights use PyTorch's layout (``weight_ih`` = U stacked per gate, ``weight_hh`` = W stacked
per gate, two biases), so :class:`rnnlab.nn.Recurrent` runs the very same parameters through
``torch.nn.LSTM``/``GRU``/``RNN`` (cuDNN on a GPU) or through these functions. The cell registry
(:mod:`rnnlab.nn.registry`) says which step each cell takes; the small modules at the end
(``RNNCell``, ``LSTMCell``, ``GRUCell``) run one step with weights of their own.

Gate order in the stacked weights follows PyTorch: LSTM ``(i, f, g, o)``, GRU ``(r, z, n)``.

GRU variants. The lecture's GRU (Cho et al. 2014) resets the previous state *before* it enters the
candidate's matmul: ``h~ = tanh(W_h (r * h_{t-1}) + U_h x_t + b_h)``. cuDNN, and therefore
``torch.nn.GRU``, applies the reset *after* the matmul: ``h~ = tanh(r * (W_h h_{t-1} + b_hn) +
U_h x_t + b_in)``, which lets all three hidden matmuls run as one before any gate is known. The two
are different functions of the same weights. cuDNN also writes the update as ``h_t = (1-z) h~ +
z h_{t-1}``; the lecture writes ``h_t = (1-z) h_{t-1} + z h~``. Each variant here keeps its own
convention, so ``variant="cudnn"`` matches ``torch.nn.GRU`` exactly.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Gates = dict[str, Tensor]
State = tuple[Tensor, ...]
GRUVariant = Literal["lecture", "cudnn"]
Nonlinearity = Literal["tanh", "relu"]


def _dropped(h: Tensor, recurrent_mask: Tensor | None) -> Tensor:
    # Variational recurrent dropout: the same mask every step, applied only where h_{t-1} enters a
    # matmul, so the carried state itself is never zeroed.
    return h if recurrent_mask is None else h * recurrent_mask


def rnn_step(
    gi: Tensor,
    state: State,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    recurrent_mask: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> tuple[State, Gates]:
    """Vanilla RNN: ``a = b + W h_{t-1} + U x_t``, ``h_t = tanh(a)`` (or ``relu(a)``).

    ``gi`` is ``U x_t + b_i`` of shape (B, H), ``state`` is ``(h,)``; returns ``(h_t,)`` and
    ``{"a": a}``. ``recurrent_mask`` (B, H), if given, multiplies ``h_{t-1}`` before the matmul.
    """
    (h,) = state
    a = gi + F.linear(_dropped(h, recurrent_mask), weight_hh, bias_hh)
    h_new = torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)
    return (h_new,), {"a": a}


def lstm_step(
    gi: Tensor,
    state: State,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    recurrent_mask: Tensor | None = None,
) -> tuple[State, Gates]:
    """LSTM, the lecture's five lines (each gate sees ``x_t`` and ``h_{t-1}``)::

        f_t = sigmoid(W_f h_{t-1} + U_f x_t + b_f)     forget
        i_t = sigmoid(W_i h_{t-1} + U_i x_t + b_i)     input
        c~_t = tanh(W_c h_{t-1} + U_c x_t + b_c)       candidate
        c_t = f_t * c_{t-1} + i_t * c~_t               update
        o_t = sigmoid(W_o h_{t-1} + U_o x_t + b_o);  h_t = o_t * tanh(c_t)   output

    ``gi`` is (B, 4H) in PyTorch's gate order ``(i, f, g, o)``; ``state`` is ``(h, c)``.
    """
    h, c = state
    i, f, g, o = (gi + F.linear(_dropped(h, recurrent_mask), weight_hh, bias_hh)).chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    return (h_new, c_new), {"forget": f, "input": i, "candidate": g, "output": o, "cell": c_new}


def gru_step(
    gi: Tensor,
    state: State,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    recurrent_mask: Tensor | None = None,
    variant: str = "lecture",
) -> tuple[State, Gates]:
    """GRU, one step; ``gi`` is (B, 3H) in the order ``(r, z, n)``, ``state`` is ``(h,)``.

    ``variant="lecture"`` (Cho 2014, the lecture's form)::

        r_t = sigmoid(W_r h_{t-1} + U_r x_t + b_r)            reset
        z_t = sigmoid(W_z h_{t-1} + U_z x_t + b_z)            update
        h~_t = tanh(W_h (r_t * h_{t-1}) + U_h x_t + b_h)      candidate: reset *before* the matmul
        h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

    ``variant="cudnn"`` (``torch.nn.GRU``): ``h~_t = tanh(r_t * (W_h h_{t-1} + b_hn) + U_h x_t +
    b_in)`` and ``h_t = (1 - z_t) * h~_t + z_t * h_{t-1}``.
    """
    (h,) = state
    hidden = h.shape[-1]
    h_in = _dropped(h, recurrent_mask)
    gi_r, gi_z, gi_n = gi.chunk(3, dim=-1)
    if variant == "cudnn":
        gh_r, gh_z, gh_n = F.linear(h_in, weight_hh, bias_hh).chunk(3, dim=-1)
        r = torch.sigmoid(gi_r + gh_r)
        z = torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + r * gh_n)
        h_new = (1 - z) * n + z * h
    else:
        # r and z need W h_{t-1}; the candidate needs W (r * h_{t-1}), a second matmul after r.
        b_rz, b_n = (
            (None, None) if bias_hh is None else (bias_hh[: 2 * hidden], bias_hh[2 * hidden :])
        )
        gh_r, gh_z = F.linear(h_in, weight_hh[: 2 * hidden], b_rz).chunk(2, dim=-1)
        r = torch.sigmoid(gi_r + gh_r)
        z = torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + F.linear(r * h_in, weight_hh[2 * hidden :], b_n))
        h_new = (1 - z) * h + z * n
    return (h_new,), {"reset": r, "update": z, "candidate": n}


class _Cell(nn.Module):
    """Weights of one cell in PyTorch's layout: ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H)."""

    gates: int = 0  # blocks stacked in the weights

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"input_size and hidden_size must be >= 1, got {input_size} and {hidden_size}"
            )
        rows = self.gates * hidden_size
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(rows)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: every weight uniform in ``±1/sqrt(hidden_size)``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)

    def zero_state(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)


class RNNCell(_Cell):
    """Vanilla RNN cell: ``a = b + W h_{t-1} + U x_t``, ``h_t = tanh(a)`` or ``relu(a)``."""

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: Nonlinearity = "tanh",
        bias: bool = True,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias)

    def forward(
        self, x: Tensor, h: Tensor | None = None, return_gates: bool = False
    ) -> Tensor | tuple[Tensor, Gates]:
        """x (B, I), h (B, H) -> h_t (B, H) [, gates]."""
        h = self.zero_state(x) if h is None else h
        (h_new,), gates = rnn_step(
            self._project(x), (h,), self.weight_hh, self.bias_hh, nonlinearity=self.nonlinearity
        )
        return (h_new, gates) if return_gates else h_new


class LSTMCell(_Cell):
    """LSTM cell (forget, input, candidate, update, output); see :func:`lstm_step`."""

    gates = 4

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, return_gates: bool = False
    ) -> tuple[Tensor, Tensor] | tuple[tuple[Tensor, Tensor], Gates]:
        """x (B, I), state (h, c) each (B, H) -> (h_t, c_t) [, gates]."""
        if state is None:
            state = (self.zero_state(x), self.zero_state(x))
        (h, c), gates = lstm_step(self._project(x), state, self.weight_hh, self.bias_hh)
        return ((h, c), gates) if return_gates else (h, c)


class GRUCell(_Cell):
    """GRU cell, ``variant="lecture"`` (reset before the matmul) or ``"cudnn"``; see :func:`gru_step`."""

    gates = 3

    def __init__(
        self, input_size: int, hidden_size: int, variant: GRUVariant = "lecture", bias: bool = True
    ) -> None:
        if variant not in ("lecture", "cudnn"):
            raise ValueError(f"variant must be 'lecture' or 'cudnn', got {variant!r}")
        self.variant = variant
        super().__init__(input_size, hidden_size, bias)

    def forward(
        self, x: Tensor, h: Tensor | None = None, return_gates: bool = False
    ) -> Tensor | tuple[Tensor, Gates]:
        """x (B, I), h (B, H) -> h_t (B, H) [, gates]."""
        h = self.zero_state(x) if h is None else h
        (h_new,), gates = gru_step(
            self._project(x), (h,), self.weight_hh, self.bias_hh, variant=self.variant
        )
        return (h_new, gates) if return_gates else h_new
