"""rnnlab: recurrent neural networks as the lecture writes them, and the lab's tasks in one command."""

from importlib.metadata import PackageNotFoundError, version

from rnnlab.cells import GRUCell, LSTMCell, RNNCell
from rnnlab.recurrent import Recurrent

try:
    __version__ = version("rnnlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["GRUCell", "LSTMCell", "RNNCell", "Recurrent", "__version__"]
