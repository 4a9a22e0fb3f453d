"""rnnlab: recurrent neural networks as the lecture writes them, and the lab's tasks in one command."""

from importlib.metadata import PackageNotFoundError, version

from rnnlab.lazy import exports

try:
    __version__ = version("rnnlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

_MODULES = {
    "rnnlab.api": ["Run", "Study", "compare", "configure", "load", "resume", "train"],
    "rnnlab.nn": ["GRUCell", "LSTMCell", "RNNCell", "Recurrent", "RecurrentConfig"],
}
__getattr__, __dir__ = exports(__name__, _MODULES)
__all__ = [*(name for names in _MODULES.values() for name in names), "__version__"]
