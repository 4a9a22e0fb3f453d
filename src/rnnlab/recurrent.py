"""``Recurrent``: the one recurrent layer every rnnlab model uses.

Stacking, directions, ragged lengths and two engines over one set of parameters:

- ``fused`` hands the whole sequence to ``torch.nn.RNN``/``LSTM``/``GRU`` (cuDNN on a GPU, packed
  sequences for ragged batches);
- ``reference`` loops the cells of :mod:`rnnlab.cells` over time, the lecture's equations verbatim.
  It is the only engine for the lecture GRU and for variational recurrent dropout, and the one that
  can hand back every gate activation.

The parameters live in a ``torch.nn`` module of the matching kind (``self.rnn``), so both engines
read the very same tensors and a model can switch engines without changing its outputs.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab import runtime
from rnnlab.cells import GATE_COUNT, Gates, gru_step, lstm_step, rnn_step
from rnnlab.errors import RnnlabError

State = Tensor | tuple[Tensor, Tensor]
CellKind = Literal["lstm", "gru", "rnn"]
Engine = Literal["auto", "fused", "reference"]

CELLS = ("lstm", "gru", "rnn")
ENGINES = ("auto", "fused", "reference")


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` (B, T, F) within its own length; padding stays in place.

    This is what makes the backward direction start at each sequence's last real element.
    """
    if lengths is None:
        return x.flip(1)
    t = torch.arange(x.shape[1], device=x.device)  # (T,)
    last = lengths.to(x.device)[:, None] - 1  # (B, 1)
    index = torch.where(t < last + 1, last - t, t)  # (B, T)
    return x.gather(1, index[:, :, None].expand_as(x))


class Recurrent(nn.Module):
    """A stack of recurrent layers, ``(B, T, input_size) -> (B, T, hidden_size * directions)``.

    Args:
        input_size: features per time step.
        hidden_size: units per layer and direction.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        layers: stacked layers; layer k > 0 reads the outputs of layer k - 1.
        bidirectional: add a second direction that reads each sequence from its end.
        dropout: dropout on the outputs of every layer but the last (as ``torch.nn.LSTM``).
        recurrent_dropout: variational dropout of ``h_{t-1}`` (one mask per sequence, every step);
            runs on the reference engine.
        weight_drop: DropConnect on the recurrent matrices ``W`` (Wan et al. 2013, as AWD-LSTM
            uses it, Merity et al. 2018): each entry of every ``weight_hh`` dropped with this
            probability, one mask per call in training (a decoder stepping token by token draws
            one per step), so the fused kernels still run.
        nonlinearity: ``"tanh"`` or ``"relu"`` for ``cell="rnn"``.
        gru_variant: ``"lecture"`` (reset before the matmul) or ``"cudnn"``; see :mod:`rnnlab.cells`.
        engine: ``"fused"``, ``"reference"`` or ``"auto"`` (fused whenever it computes the same
            function: everything but the lecture GRU and recurrent dropout).
        forget_bias: if given, the LSTM forget-gate bias starts at this value (Jozefowicz et al.
            2015 recommend 1.0), the other biases as usual.
        init: ``"torch"`` (every weight uniform in ±1/sqrt(H)) or ``"keras"`` (the lab's: Glorot
            uniform input weights, orthogonal recurrent weights, zero biases and, for the LSTM, a
            forget-gate bias of 1).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        cell: CellKind = "lstm",
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        gru_variant: Literal["lecture", "cudnn"] = "lecture",
        engine: Engine = "auto",
        forget_bias: float | None = None,
        init: Literal["torch", "keras"] = "torch",
    ) -> None:
        super().__init__()
        _choice("cell", cell, CELLS)
        _choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        _choice("gru_variant", gru_variant, ("lecture", "cudnn"))
        _choice("init", init, ("torch", "keras"))
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("layers", layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name, value in (
            ("dropout", dropout),
            ("recurrent_dropout", recurrent_dropout),
            ("weight_drop", weight_drop),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if nonlinearity == "relu" and cell != "rnn":
            raise ValueError(f"nonlinearity='relu' applies to cell='rnn' only, got cell={cell!r}")
        if forget_bias is not None and cell != "lstm":
            raise ValueError(f"forget_bias applies to cell='lstm' only, got cell={cell!r}")
        self._check_fits(input_size, hidden_size, layers, 2 if bidirectional else 1, cell)
        self.input_size, self.hidden_size, self.layers = input_size, hidden_size, layers
        self.cell, self.nonlinearity, self.gru_variant = cell, nonlinearity, gru_variant
        self.directions = 2 if bidirectional else 1
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout
        self.weight_drop = weight_drop
        self.engine = engine
        self.resolved_engine()  # validate now, not at the first forward

        torch_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        # The nn module is the parameter store of both engines (and the fused engine itself).
        self.rnn = torch_cls(
            input_size,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
            **extra,
        )
        if init == "keras" and forget_bias is None and cell == "lstm":
            forget_bias = 1.0  # Keras's unit_forget_bias
        with torch.no_grad():
            for layer in range(layers):
                for d in range(self.directions):
                    w_ih, w_hh, b_ih, b_hh = self._weights(layer, d)
                    if init == "keras":
                        # Keras's matrices are the transposes of these; both inits are symmetric in that.
                        nn.init.xavier_uniform_(w_ih)
                        nn.init.orthogonal_(w_hh)
                        b_ih.zero_()
                        b_hh.zero_()
                    if forget_bias is not None:  # gate order (i, f, g, o): f is the second block
                        b_ih[hidden_size : 2 * hidden_size] = forget_bias
                        b_hh[hidden_size : 2 * hidden_size] = 0.0

    @staticmethod
    def _check_fits(inputs: int, hidden: int, layers: int, directions: int, cell: str) -> None:
        """Refuse, before building it, a stack whose weights alone exceed the memory free: torch
        would otherwise spend minutes allocating (or creating 2**31 layers) before failing."""
        rows = GATE_COUNT[cell] * hidden
        first = rows * (inputs + hidden + 2)
        rest = rows * (hidden * directions + hidden + 2)
        params = directions * (first + (layers - 1) * rest)
        free = runtime.available_memory(torch.device("cpu"))
        if free is not None and 4 * params > free:
            raise RnnlabError(
                f"a recurrent stack of {layers:,} layer(s) of {hidden:,} units holds "
                f"{params:,} weights, {runtime.gigabytes(4 * params)}, more than the "
                f"{runtime.gigabytes(free)} of memory free; use fewer units or layers"
            )

    @property
    def output_size(self) -> int:
        """Features per time step of the outputs: ``hidden_size * directions``."""
        return self.hidden_size * self.directions

    def resolved_engine(self) -> str:
        """The engine ``forward`` will run: ``"fused"`` or ``"reference"``."""
        _choice("engine", self.engine, ENGINES)
        needs_reference = (self.cell == "gru" and self.gru_variant == "lecture") or (
            self.recurrent_dropout > 0
        )
        if self.engine == "fused" and needs_reference:
            why = "the lecture GRU" if self.cell == "gru" else "recurrent_dropout > 0"
            raise ValueError(
                f"engine='fused' cannot run {why} (torch.nn computes a different function); "
                "use engine='reference' or 'auto'"
            )
        if self.engine == "auto":
            return "reference" if needs_reference else "fused"
        return self.engine

    def _weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return tuple(
            getattr(self.rnn, f"{n}{suffix}")
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )

    def _check(self, x: Tensor, lengths: Tensor | None, state: State | None) -> Tensor | None:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must be shaped (batch, time, {self.input_size}), got {tuple(x.shape)}"
            )
        batch, steps = x.shape[0], x.shape[1]
        if lengths is not None:
            lengths = torch.as_tensor(lengths)
            if lengths.shape != (batch,) or lengths.is_floating_point():
                raise ValueError(
                    f"lengths must be {batch} integers (one per sequence), got shape "
                    f"{tuple(lengths.shape)} dtype {lengths.dtype}"
                )
            low, high = int(lengths.min()), int(lengths.max())
            if low < 1 or high > steps:
                raise ValueError(
                    f"lengths must lie in [1, {steps}] (the time axis), got {low}..{high}"
                )
        if state is not None:
            expected = (self.layers * self.directions, batch, self.hidden_size)
            parts = state if self.cell == "lstm" else (state,)
            if self.cell == "lstm" and not (isinstance(state, tuple) and len(state) == 2):
                raise ValueError(
                    f"state must be a tuple (h, c) for an LSTM, each shaped {expected}"
                )
            for part in parts:
                if not isinstance(part, Tensor) or tuple(part.shape) != expected:
                    got = tuple(part.shape) if isinstance(part, Tensor) else type(part).__name__
                    raise ValueError(
                        f"state must be shaped {expected} (layers*directions, batch, hidden), got {got}"
                    )
        return lengths

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, state: State | None = None
    ) -> tuple[Tensor, State]:
        """Run the stack over ``x`` (B, T, input_size).

        Args:
            x: inputs, batch first.
            lengths: (B,) true length of each sequence, or None if all are T long.
            state: initial state (layers*directions, B, H), a ``(h, c)`` tuple for LSTM; zeros if None.

        Returns:
            ``outputs`` (B, T, H * directions), zero past each sequence's end, and the final
            ``state`` (same layout as the input state), each sequence's state at its own last step.
        """
        lengths = self._check(x, lengths, state)
        if self.resolved_engine() == "fused":
            return self._fused(x, lengths, state)
        outputs, final, _ = self._reference(x, lengths, state, collect_gates=False)
        return outputs, final

    def gates(self, x: Tensor, lengths: Tensor | None = None) -> list[Gates]:
        """Gate activations of every layer and direction, each (B, T, H), via the reference engine.

        The list is ordered layer by layer, forward direction first. Values past a sequence's end
        are zero. Use it for plots; training uses ``forward``.
        """
        lengths = self._check(x, lengths, None)
        return self._reference(x, lengths, None, collect_gates=True)[2]

    def _dropped(self, w_hh: Tensor) -> Tensor:
        """``w_hh`` with ``weight_drop`` of its entries zeroed (and the rest rescaled) in training."""
        return F.dropout(w_hh, self.weight_drop, self.training and self.weight_drop > 0)

    def _torch_rnn(
        self, inputs: Tensor | PackedSequence, state: State | None
    ) -> tuple[Tensor | PackedSequence, State]:
        """``self.rnn`` on ``inputs``; with ``weight_drop`` in training, on masked copies of its
        recurrent matrices (the gradient reaches the parameters through the masks)."""
        if not (self.training and self.weight_drop > 0):
            return self.rnn(inputs, state)
        dropped = {
            name: self._dropped(w)
            for name, w in self.rnn.named_parameters()
            if name.startswith("weight_hh")
        }
        return functional_call(self.rnn, dropped, (inputs, state))

    def _fused(
        self, x: Tensor, lengths: Tensor | None, state: State | None
    ) -> tuple[Tensor, State]:
        if lengths is None:
            return self._torch_rnn(x, state)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self._torch_rnn(packed, state)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
        return outputs, final

    def _reference(
        self, x: Tensor, lengths: Tensor | None, state: State | None, collect_gates: bool
    ) -> tuple[Tensor, State, list[Gates]]:
        batch, steps, _ = x.shape
        mask = None
        if lengths is not None:
            mask = (torch.arange(steps, device=x.device) < lengths.to(x.device)[:, None])[
                ..., None
            ]  # (B, T, 1)
        if state is None:
            zeros = x.new_zeros(self.layers * self.directions, batch, self.hidden_size)
            state = (zeros, zeros) if self.cell == "lstm" else zeros
        finals, all_gates = [], []
        layer_input = x
        for layer in range(self.layers):
            outputs = []
            for d in range(self.directions):
                k = layer * self.directions + d
                start = (state[0][k], state[1][k]) if self.cell == "lstm" else state[k]
                seq = reverse_padded(layer_input, lengths) if d else layer_input
                out, final, gates = self._scan(seq, layer, d, start, mask, collect_gates)
                if d:
                    out = reverse_padded(out, lengths)
                    gates = {name: reverse_padded(g, lengths) for name, g in gates.items()}
                outputs.append(out)
                finals.append(final)
                all_gates.append(gates)
            layer_input = torch.cat(outputs, dim=-1) if self.directions == 2 else outputs[0]
            if layer < self.layers - 1 and self.dropout > 0:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
        if self.cell == "lstm":
            final_state: State = (
                torch.stack([f[0] for f in finals]),
                torch.stack([f[1] for f in finals]),
            )
        else:
            final_state = torch.stack(finals)
        return layer_input, final_state, all_gates

    def _scan(
        self,
        seq: Tensor,
        layer: int,
        direction: int,
        state: State,
        mask: Tensor | None,
        collect_gates: bool,
    ) -> tuple[Tensor, State, Gates]:
        """Loop one layer/direction over time; the input projection is one matmul for all steps."""
        w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
        w_hh = self._dropped(w_hh)
        gi = F.linear(seq, w_ih, b_ih)  # (B, T, G*H): U x_t + b for every t at once
        rmask = None
        if self.training and self.recurrent_dropout > 0:
            keep = 1.0 - self.recurrent_dropout
            rmask = torch.bernoulli(seq.new_full((seq.shape[0], self.hidden_size), keep)) / keep
        outs, gate_steps = [], []
        for t in range(seq.shape[1]):
            if self.cell == "lstm":
                new, gates = lstm_step(gi[:, t], state, w_hh, b_hh, rmask)
            elif self.cell == "gru":
                new, gates = gru_step(gi[:, t], state, w_hh, b_hh, self.gru_variant, rmask)
            else:
                new, gates = rnn_step(gi[:, t], state, w_hh, b_hh, self.nonlinearity, rmask)
            if mask is not None:
                # Past its end a sequence keeps its last state, so the final state is its own.
                m = mask[:, t]
                new = (
                    (torch.where(m, new[0], state[0]), torch.where(m, new[1], state[1]))
                    if self.cell == "lstm"
                    else torch.where(m, new, state)
                )
            state = new
            outs.append(state[0] if self.cell == "lstm" else state)
            if collect_gates:
                gate_steps.append(gates)
        outputs = torch.stack(outs, dim=1)  # (B, T, H)
        gates = (
            {name: torch.stack([g[name] for g in gate_steps], dim=1) for name in gate_steps[0]}
            if collect_gates
            else {}
        )
        if mask is not None:
            outputs = outputs * mask
            gates = {name: g * mask for name, g in gates.items()}
        return outputs, state, gates
