"""``Recurrent``: the one recurrent layer every rnnlab model uses, and its typed config.

Stacking, directions, ragged lengths and two engines over one set of parameters:

- ``fused`` hands the whole sequence to the cell's ``torch.nn`` class (``RNN``/``LSTM``/``GRU``,
  cuDNN on a GPU, packed sequences for ragged batches);
- ``reference`` loops the cell's step function over time, the lecture's equations verbatim. It is
  the only engine for the lecture GRU and for variational recurrent dropout, and the one that can
  hand back every gate activation.

What depends on the cell (its step, gates, state and fused class) comes from the cell registry
(:mod:`rnnlab.nn.registry`); this module never names a cell. The parameters live in a ``torch.nn``
module of the cell's class (``self.rnn``), so both engines read the very same tensors and a model
can switch engines without changing its outputs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab import runtime
from rnnlab.config import check_at_least, check_fraction, check_types
from rnnlab.errors import RnnlabError, SettingError
from rnnlab.nn.cells import Gates
from rnnlab.nn.registry import CELLS, CellSpec, cell

State = Tensor | tuple[Tensor, ...]
Engine = Literal["auto", "fused", "reference"]


@dataclass
class RecurrentConfig:
    """A stack of recurrent layers: the ``[model]`` keys every task shares.

    Attributes:
        cell: a cell of the registry (``rnnlab.nn.registry.CELLS``): ``"lstm"``, ``"gru"``,
            ``"rnn"``...
        hidden: units per layer and direction.
        layers: stacked layers; layer k > 0 reads the outputs of layer k - 1.
        bidirectional: add a second direction that reads each sequence from its end.
        dropout: dropout on the outputs of every layer but the last (as ``torch.nn.LSTM``).
        recurrent_dropout: variational dropout of ``h_{t-1}`` (one mask per sequence, every
            step); runs on the reference engine.
        weight_drop: DropConnect on the recurrent matrices ``W`` (Wan et al. 2013, as AWD-LSTM
            uses it, Merity et al. 2018): each entry of every ``weight_hh`` dropped with this
            probability, one mask per call in training (a decoder stepping token by token draws
            one per step), so the fused kernels still run.
        nonlinearity: ``"tanh"`` or ``"relu"``, for cells that take it (the vanilla RNN).
        gru_variant: ``"lecture"`` (reset before the matmul) or ``"cudnn"``; see
            :mod:`rnnlab.nn.cells`.
        engine: ``"fused"``, ``"reference"`` or ``"auto"`` (fused whenever it computes the same
            function).
        forget_bias: if given, the forget gate's bias starts at this value (Jozefowicz et al.
            2015 recommend 1.0), the other biases as usual; for cells with a forget gate.
        init: ``"torch"`` (every weight uniform in ±1/sqrt(H)) or ``"keras"`` (the lab's: Glorot
            uniform input weights, orthogonal recurrent weights, zero biases and a forget-gate
            bias of 1).
    """

    cell: str = "lstm"
    hidden: int = 64
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    gru_variant: Literal["lecture", "cudnn"] = "cudnn"
    engine: Engine = "auto"
    forget_bias: float | None = None
    init: Literal["torch", "keras"] = "torch"

    def check(self) -> None:
        """Every key's type, and every rule the types cannot express, once: a one-line error
        naming the key."""
        check_types("model", self)
        spec = cell(self.cell)
        check_at_least("model", self, 1, "hidden", "layers")
        for key in ("dropout", "recurrent_dropout", "weight_drop"):
            check_fraction(f"model.{key}", getattr(self, key))
        defaults = RecurrentConfig()
        for other in CELLS.values():
            for key in other.options:
                if key not in spec.options and getattr(self, key) != getattr(defaults, key):
                    owners = [c.name for c in CELLS.values() if key in c.options]
                    raise SettingError(
                        f"config key model.{key}={getattr(self, key)!r} needs model.cell="
                        f"{' or '.join(map(repr, owners))}, not {self.cell!r}"
                    )
        if self.engine == "fused":
            why = self.unfused_reason(spec)
            if why is not None:
                raise SettingError(
                    f"config key model.engine='fused' cannot run {why} (torch.nn computes a "
                    "different function); use 'auto' or 'reference'"
                )

    def unfused_reason(self, spec: CellSpec) -> str | None:
        """Why the fused engine cannot run this config, or None if it can."""
        if spec.fused is None:
            return f"the {spec.name} cell (it has no fused torch class)"
        if self.recurrent_dropout > 0:
            return "recurrent dropout"
        return spec.unfused(self)


Settings = TypeVar("Settings", bound=RecurrentConfig)


def settle(config: Settings | None, kind: type[Settings], options: dict[str, Any]) -> Settings:
    """A model's config: ``config`` (None: ``kind``'s defaults) with keyword ``options``
    replacing its keys, checked once (every model takes its settings this way)."""
    settled = dataclasses.replace(config or kind(), **options)
    settled.check()
    return settled


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


def stack_weights(spec: CellSpec, inputs: int, hidden: int, layers: int, directions: int) -> int:
    """How many weights a stack holds: per layer and direction, ``gate_count * hidden`` rows of
    input and recurrent weights and two biases."""
    rows = spec.gate_count * hidden
    first = rows * (inputs + hidden + 2)
    rest = rows * (hidden * directions + hidden + 2)
    return directions * (first + (layers - 1) * rest)


class Recurrent(nn.Module):
    """A stack of recurrent layers, ``(B, T, input_size) -> (B, T, hidden * directions)``.

    Built as ``torch.nn.LSTM`` is, from sizes and keywords (the keys of
    :class:`RecurrentConfig`), or from a config object::

        >>> layer = Recurrent(3, 16, cell="gru", bidirectional=True)
        >>> outputs, state = layer(torch.zeros(2, 5, 3))
        >>> tuple(outputs.shape), tuple(state.shape)
        ((2, 5, 32), (2, 2, 16))
        >>> Recurrent(3, config=RecurrentConfig(hidden=16, cell="gru")).output_size
        16

    Args:
        input_size: features per time step.
        hidden_size: units per layer and direction (``config.hidden``).
        config: the stack's settings; ``hidden_size`` and keyword ``options`` replace its keys.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int | None = None,
        config: RecurrentConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if hidden_size is not None:
            options["hidden"] = hidden_size
        if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1:
            raise SettingError(f"input_size must be an integer >= 1, got {input_size!r}")
        config = settle(config, RecurrentConfig, options)
        self.config, self.spec = config, cell(config.cell)
        self.cell = config.cell
        self.input_size, self.hidden_size, self.layers = input_size, config.hidden, config.layers
        self.directions = 2 if config.bidirectional else 1
        self.dropout, self.recurrent_dropout = config.dropout, config.recurrent_dropout
        self.weight_drop = config.weight_drop
        self.engine = config.engine
        _check_fits(self.spec, input_size, config.hidden, config.layers, self.directions)
        self.step_options = {kw: getattr(config, key) for key, kw in self.spec.step_options.items()}
        fused_options = {kw: getattr(config, key) for key, kw in self.spec.fused_options.items()}
        # The fused class is the parameter store of both engines (and the fused engine itself).
        self.rnn: nn.Module
        if self.spec.fused is not None:
            self.rnn = self.spec.fused(
                input_size,
                config.hidden,
                num_layers=config.layers,
                batch_first=True,
                bidirectional=config.bidirectional,
                dropout=config.dropout if config.layers > 1 else 0.0,
                **fused_options,
            )
        else:
            self.rnn = CellWeights(
                self.spec, input_size, config.hidden, self.layers, self.directions
            )
        self._initialise(config)

    def _initialise(self, config: RecurrentConfig) -> None:
        forget_bias = config.forget_bias
        if config.init == "keras" and forget_bias is None and self.spec.forget_block is not None:
            forget_bias = 1.0  # Keras's unit_forget_bias
        hidden = config.hidden
        with torch.no_grad():
            for layer in range(self.layers):
                for d in range(self.directions):
                    w_ih, w_hh, b_ih, b_hh = self.weights(layer, d)
                    if config.init == "keras":
                        # Keras's matrices are the transposes of these; both inits are symmetric in that.
                        nn.init.xavier_uniform_(w_ih)
                        b_ih.zero_()
                        if w_hh is not None and b_hh is not None:
                            nn.init.orthogonal_(w_hh)
                            b_hh.zero_()
                    if forget_bias is not None and self.spec.forget_block is not None:
                        block = slice(
                            self.spec.forget_block * hidden, (self.spec.forget_block + 1) * hidden
                        )
                        b_ih[block] = forget_bias
                        if b_hh is not None:
                            b_hh[block] = 0.0

    @property
    def output_size(self) -> int:
        """Features per time step of the outputs: ``hidden * directions``."""
        return self.hidden_size * self.directions

    def resolved_engine(self) -> str:
        """The engine ``forward`` will run: ``"fused"`` or ``"reference"``."""
        if self.engine == "auto":
            return "reference" if self.config.unfused_reason(self.spec) else "fused"
        return self.engine

    def weights(
        self, layer: int, direction: int
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of one layer and direction (0 forward);
        the recurrent pair is None for a cell without recurrent weights."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        w_ih: Tensor = getattr(self.rnn, f"weight_ih{suffix}")
        b_ih: Tensor = getattr(self.rnn, f"bias_ih{suffix}")
        w_hh: Tensor | None = getattr(self.rnn, f"weight_hh{suffix}", None)
        b_hh: Tensor | None = getattr(self.rnn, f"bias_hh{suffix}", None)
        return w_ih, w_hh, b_ih, b_hh

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
            parts = self._parts(state)
            if len(parts) != len(self.spec.state):
                kind = (
                    "a tensor"
                    if len(self.spec.state) == 1
                    else f"a tuple ({', '.join(self.spec.state)})"
                )
                raise ValueError(
                    f"state must be {kind} for a {self.cell} layer, each shaped {expected}"
                )
            for part in parts:
                if not isinstance(part, Tensor) or tuple(part.shape) != expected:
                    got = tuple(part.shape) if isinstance(part, Tensor) else type(part).__name__
                    raise ValueError(
                        f"state must be shaped {expected} (layers*directions, batch, hidden), got {got}"
                    )
        return lengths

    def _parts(self, state: State) -> tuple[Tensor, ...]:
        """A state as a tuple of its parts, whatever the cell: ``(h,)`` or ``(h, c)``."""
        return tuple(state) if isinstance(state, tuple | list) else (state,)

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, state: State | None = None
    ) -> tuple[Tensor, State]:
        """Run the stack over ``x`` (B, T, input_size).

        Args:
            x: inputs, batch first.
            lengths: (B,) true length of each sequence, or None if all are T long.
            state: initial state (layers*directions, B, H), a ``(h, c)`` tuple for an LSTM;
                zeros if None.

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
            outputs, final = self._torch_rnn(x, state)
            return outputs, final  # type: ignore[return-value]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self._torch_rnn(packed, state)
        padded, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])  # type: ignore[arg-type]
        return padded, final

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
            parts: tuple[Tensor, ...] = (zeros,) * len(self.spec.state)
        else:
            parts = self._parts(state)
        finals, all_gates = [], []
        layer_input = x
        for layer in range(self.layers):
            outputs = []
            for d in range(self.directions):
                k = layer * self.directions + d
                start = tuple(p[k] for p in parts)
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
        final_state = tuple(torch.stack([f[i] for f in finals]) for i in range(len(parts)))
        return layer_input, self.spec.carried(final_state), all_gates

    def _scan(
        self,
        seq: Tensor,
        layer: int,
        direction: int,
        state: tuple[Tensor, ...],
        mask: Tensor | None,
        collect_gates: bool,
    ) -> tuple[Tensor, tuple[Tensor, ...], Gates]:
        """Loop one layer/direction over time; the input projection is one matmul for all steps."""
        w_ih, w_hh, b_ih, b_hh = self.weights(layer, direction)
        if w_hh is not None:
            w_hh = self._dropped(w_hh)
        gi = F.linear(seq, w_ih, b_ih)  # (B, T, G*H): U x_t + b for every t at once
        rmask = None
        if self.training and self.recurrent_dropout > 0:
            keep = 1.0 - self.recurrent_dropout
            rmask = torch.bernoulli(seq.new_full((seq.shape[0], self.hidden_size), keep)) / keep
        outs, gate_steps = [], []
        for t in range(seq.shape[1]):
            new, gates = self.spec.step(gi[:, t], state, w_hh, b_hh, rmask, **self.step_options)
            if mask is not None:
                # Past its end a sequence keeps its last state, so the final state is its own.
                m = mask[:, t]
                new = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
            state = new
            outs.append(state[0])
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


class CellWeights(nn.Module):
    """A stack's weights where no ``torch.nn`` class holds them, laid out and named as torch
    names them (``weight_ih_l0``, ``bias_hh_l1_reverse``...) and initialised as torch does:
    every weight uniform in ±1/sqrt(hidden)."""

    def __init__(
        self, spec: CellSpec, input_size: int, hidden: int, layers: int, directions: int
    ) -> None:
        super().__init__()
        rows = spec.gate_count * hidden
        for layer in range(layers):
            inputs = input_size if layer == 0 else hidden * directions
            for d in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                shapes: dict[str, tuple[int, ...]] = {
                    "weight_ih": (rows, inputs),
                    "bias_ih": (rows,),
                }
                if spec.recurrent:
                    shapes |= {"weight_hh": (rows, hidden), "bias_hh": (rows,)}
                for name, shape in shapes.items():
                    self.register_parameter(name + suffix, nn.Parameter(torch.empty(shape)))
        bound = 1.0 / math.sqrt(hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)


def _check_fits(spec: CellSpec, inputs: int, hidden: int, layers: int, directions: int) -> None:
    """Refuse, before building it, a stack whose weights alone exceed the memory free: torch would
    otherwise spend minutes allocating (or creating 2**31 layers) before failing."""
    params = stack_weights(spec, inputs, hidden, layers, directions)
    free = runtime.available_memory(torch.device("cpu"))
    if free is not None and 4 * params > free:
        raise RnnlabError(
            f"a recurrent stack of {layers:,} layer(s) of {hidden:,} units holds {params:,} "
            f"weights, {runtime.gigabytes(4 * params)}, more than the "
            f"{runtime.gigabytes(free)} of memory free; use fewer units or layers"
        )
