"""The lecture's models: cells and their registry, the recurrent stack, heads, encoder–decoders."""

from rnnlab.nn.cells import GRUCell, LSTMCell, RNNCell
from rnnlab.nn.heads import CharLM, CharLMConfig, HeadConfig, ManyToOne, ManyToOneConfig
from rnnlab.nn.recurrent import Recurrent, RecurrentConfig
from rnnlab.nn.registry import CELLS, CellSpec, cell, register
from rnnlab.nn.seq2seq import Seq2Seq, Seq2SeqConfig

__all__ = [
    "CELLS",
    "CellSpec",
    "CharLM",
    "CharLMConfig",
    "GRUCell",
    "HeadConfig",
    "LSTMCell",
    "ManyToOne",
    "ManyToOneConfig",
    "RNNCell",
    "Recurrent",
    "RecurrentConfig",
    "Seq2Seq",
    "Seq2SeqConfig",
    "cell",
    "register",
]
