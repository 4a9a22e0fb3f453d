"""The cell registry: every layer, check and command reads it, and a new cell is one entry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import rnnlab
from torch import Tensor

from rnnlab.errors import RnnlabError
from rnnlab.nn import CELLS, CellSpec, ManyToOne, Recurrent, RecurrentConfig, cell, register
from rnnlab.nn.cells import State
from rnnlab.runs.compare import parse_cells


def leaky_step(
    gi: Tensor,
    state: State,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    recurrent_mask: Tensor | None = None,
) -> tuple[State, dict[str, Tensor]]:
    """A leaky RNN: ``k_t = sigmoid(W_k h_{t-1} + U_k x_t)``, ``h_t = (1 - k_t) h_{t-1} + k_t
    tanh(W_a h_{t-1} + U_a x_t)``."""
    (h,) = state
    keep, a = (gi + F.linear(h, weight_hh, bias_hh)).chunk(2, dim=-1)
    keep = torch.sigmoid(keep)
    h_new = (1 - keep) * h + keep * torch.tanh(a)
    return (h_new,), {"leak": keep}


LEAKY = CellSpec(
    name="leaky",
    summary="a leaky RNN, registered by a test",
    step=leaky_step,
    blocks=("leak", "a"),
    state=("h",),
    gates=("leak",),
)


@pytest.fixture
def leaky(monkeypatch):
    """The leaky cell in the registry for one test."""
    monkeypatch.setitem(CELLS, "leaky", LEAKY)
    return LEAKY


def test_every_registered_cell_names_its_blocks_state_and_step():
    for name, spec in CELLS.items():
        assert spec.name == name and spec.blocks and spec.state[0] == "h" and callable(spec.step)
        assert set(spec.gates) <= {*spec.blocks, "cell", "update", "candidate", "reset"}


def test_a_new_cell_is_one_entry_and_runs_in_every_model(leaky):
    torch.manual_seed(0)
    layer = Recurrent(3, 4, cell="leaky", layers=2, bidirectional=True)
    assert layer.resolved_engine() == "reference"  # no fused class
    assert layer.rnn.weight_ih_l1_reverse.shape == (8, 8)  # torch's names and layout
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    outputs, state = layer(x, lengths)
    assert outputs.shape == (2, 5, 8) and state.shape == (4, 2, 4)
    assert outputs[1, 3:].abs().sum() == 0  # zero past the second sequence's end
    gates = layer.gates(x, lengths)
    assert set(gates[0]) == {"leak"} and gates[0]["leak"].shape == (2, 5, 4)
    model = ManyToOne(3, 2, cell="leaky", hidden=4)
    model(x).sum().backward()  # it trains: every weight gets a gradient
    assert all(p.grad is not None for p in model.parameters())


def test_the_config_reads_the_registry(leaky):
    RecurrentConfig(cell="leaky").check()
    with pytest.raises(RnnlabError, match="'leaky'") as info:
        RecurrentConfig(cell="leakyy").check()
    assert "did you mean 'leaky'" in str(info.value)
    with pytest.raises(RnnlabError, match=r"model\.engine='fused' cannot run the leaky cell"):
        RecurrentConfig(cell="leaky", engine="fused").check()
    with pytest.raises(RnnlabError, match=r"model\.forget_bias.*needs model\.cell='lstm'"):
        RecurrentConfig(cell="leaky", forget_bias=1.0).check()
    assert "leaky" in parse_cells(None)
    assert cell("leaky") is leaky


def test_cells_lists_the_registry(capsys, leaky):
    code, out, _ = rnnlab(capsys, "cells")
    assert code == 0
    for name in CELLS:
        assert name in out
    assert "a leaky RNN" in out


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="registered already"):
        register(CELLS["lstm"])


def test_gate_diagnostics_read_which_cells_have_gates():
    assert not CELLS["rnn"].gates
    assert CELLS["lstm"].forget_block == CELLS["lstm"].blocks.index("forget")
