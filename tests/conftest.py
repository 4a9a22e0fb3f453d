"""Shared fixtures: the lab's datasets, read-only, in the folder beside the repository."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rnnlab.errors import RnnlabError


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The lab's data files: env ``RNNLAB_TEST_DATA``, else ``<repo>/../shared/data``."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = Path(os.environ.get("RNNLAB_TEST_DATA", default))
    if not (path / "SHA256SUMS").is_file():
        pytest.fail(
            f"lab datasets not found in {path}: set RNNLAB_TEST_DATA to the folder holding "
            "LondonAQ.npz, Airlines.csv, ... and SHA256SUMS",
            pytrace=False,
        )
    return path


@contextmanager
def raises_one_line(*parts: str) -> Iterator[None]:
    """Expect an RnnlabError whose message is one line and contains every part (the file name…)."""
    with pytest.raises(RnnlabError) as info:
        yield
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


@pytest.fixture
def float64():
    """Run a test with float64 as torch's default dtype, restored afterwards."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
