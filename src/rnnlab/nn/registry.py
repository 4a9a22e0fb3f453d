"""The cell registry: everything that depends on which cell a layer runs, in one place.

One entry per cell, in the spirit of ``torch.nn.RNNBase``, where the mode decides the gate size in
one place: the cell's step function (its equations are in the step's docstring), the gate blocks
stacked in its weights, its state (``h``, or ``h`` and ``c``), the fused ``torch.nn`` class that
computes the same function, the config keys that belong to it and which engines can run it.
:class:`rnnlab.nn.Recurrent`, the config's checks, ``rnnlab diagnose`` and the CLI's choices all
read it; nothing else names a cell.

Adding a cell is its step function (:mod:`rnnlab.nn.cells`) and one entry::

    register(CellSpec(
        name="mycell",
        summary="what it is, in a few words",
        step=mycell_step,               # (gi, state, weight_hh, bias_hh, recurrent_mask) -> ...
        blocks=("update", "candidate"),  # what weight_ih / weight_hh stack, in order
        state=("h",),
        gates=("update", "candidate"),   # what `rnnlab diagnose gates` draws
    ))
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from rnnlab.errors import SettingError
from rnnlab.nn.cells import Gates, State, gru_step, lstm_step, rnn_step

StepFn = Callable[..., tuple[State, Gates]]


def _always(config: Any) -> str | None:
    return None


@dataclass(frozen=True)
class CellSpec:
    """What a layer needs to know to run one cell.

    Attributes:
        name: the cell's name, as ``model.cell`` gives it.
        summary: a few words for ``--help`` and the docs.
        step: one time step, ``step(gi, state, weight_hh, bias_hh, recurrent_mask, **options)``
            -> ``(state, gates)``; see :mod:`rnnlab.nn.cells`.
        blocks: the gate blocks stacked in ``weight_ih`` and ``weight_hh``, in order.
        state: the state's parts: ``("h",)`` or ``("h", "c")``.
        fused: the ``torch.nn`` class computing the same function (cuDNN on a GPU), if any; it
            then also holds the weights. Without one, a layer keeps them itself, named alike.
        recurrent: whether the gates read ``h_{t-1}`` through recurrent weights ``W``.
        fused_options: config keys handed to the fused class, as ``{config key: its keyword}``.
        step_options: config keys handed to ``step``, as ``{config key: its keyword}``.
        options: config keys that apply to this cell only: setting one for another cell is an
            error that names both.
        gates: which of the step's outputs ``rnnlab diagnose gates`` draws (none: no gates).
        forget_block: the block whose bias ``model.forget_bias`` sets (the LSTM's forget gate).
        unfused: why the fused class would compute another function for a config (the lecture's
            GRU), or None where it computes this one.
    """

    name: str
    summary: str
    step: StepFn
    blocks: tuple[str, ...]
    state: tuple[str, ...]
    fused: Callable[..., nn.RNNBase] | None = None
    recurrent: bool = True
    fused_options: dict[str, str] = field(default_factory=dict)
    step_options: dict[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()
    forget_block: int | None = None
    unfused: Callable[[Any], str | None] = _always

    @property
    def gate_count(self) -> int:
        """Blocks stacked in the weights: ``weight_ih`` is (gate_count * hidden, input)."""
        return len(self.blocks)

    def carried(self, parts: tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
        """A state as callers see it: the tensor ``h``, or the tuple ``(h, c)``."""
        return parts[0] if len(self.state) == 1 else parts


CELLS: dict[str, CellSpec] = {}


def register(spec: CellSpec) -> CellSpec:
    """Add ``spec`` to the registry (a name registered twice is a mistake, refused)."""
    if spec.name in CELLS:
        raise ValueError(f"cell {spec.name!r} is registered already")
    CELLS[spec.name] = spec
    return spec


def cell(name: str) -> CellSpec:
    """The registered cell ``name``; an unknown one is an error listing them all."""
    if name not in CELLS:
        close = difflib.get_close_matches(name, CELLS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SettingError(
            f"config key model.cell must be one of {', '.join(map(repr, CELLS))} (the cell "
            f"registry), got {name!r}{hint}"
        )
    return CELLS[name]


register(
    CellSpec(
        name="rnn",
        summary="vanilla RNN: h_t = tanh(W h_{t-1} + U x_t + b)",
        step=rnn_step,
        blocks=("a",),
        state=("h",),
        fused=nn.RNN,
        fused_options={"nonlinearity": "nonlinearity"},
        step_options={"nonlinearity": "nonlinearity"},
        options=("nonlinearity",),
    )
)
register(
    CellSpec(
        name="lstm",
        summary="LSTM: forget, input, candidate and output gates, a cell state",
        step=lstm_step,
        blocks=("input", "forget", "candidate", "output"),
        state=("h", "c"),
        fused=nn.LSTM,
        options=("forget_bias",),
        gates=("forget", "input", "candidate", "output", "cell"),
        forget_block=1,
    )
)
register(
    CellSpec(
        name="gru",
        summary="GRU: reset and update gates (the lecture's or cuDNN's, model.gru_variant)",
        step=gru_step,
        blocks=("reset", "update", "candidate"),
        state=("h",),
        fused=nn.GRU,
        step_options={"gru_variant": "variant"},
        gates=("reset", "update", "candidate"),
        unfused=lambda config: "the lecture GRU" if config.gru_variant == "lecture" else None,
    )
)
