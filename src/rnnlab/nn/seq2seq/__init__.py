"""Encoder–decoders: the model (:mod:`.model`) and its decoding (:mod:`.decoding`)."""

from rnnlab.nn.seq2seq.decoding import Beams, Decoded, beam_search, greedy, length_penalty, select
from rnnlab.nn.seq2seq.model import Seq2Seq, Seq2SeqConfig

__all__ = [
    "Beams",
    "Decoded",
    "Seq2Seq",
    "Seq2SeqConfig",
    "beam_search",
    "greedy",
    "length_penalty",
    "select",
]
