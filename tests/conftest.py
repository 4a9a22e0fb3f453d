"""Shared fixtures: the lab's datasets, read-only, and helpers for one-line errors."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rnnlab.data import registry
from rnnlab.errors import RnnlabError

# The lab's datasets the tests read (the addition task generates its own data).
LAB_DATASETS = ("london-aq", "electric-devices", "airlines", "poetry1", "poetry2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding the lab's data files.

    Env ``RNNLAB_TEST_DATA``, else ``<repo>/../shared/data`` where a checkout has the lab's copies
    beside it; on a fresh machine, the data directory the package itself uses (``RNNLAB_DATA``,
    else the user cache), where the registry downloads what is missing once, digests checked.
    """
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    given = os.environ.get("RNNLAB_TEST_DATA")
    if given or (default / "SHA256SUMS").is_file():
        path = Path(given or default)
        if not (path / "SHA256SUMS").is_file():
            pytest.fail(
                f"RNNLAB_TEST_DATA={path}: no SHA256SUMS there; point it at the folder holding "
                "LondonAQ.npz, Airlines.csv, ... and SHA256SUMS, or unset it to download them",
                pytrace=False,
            )
        return path
    path = registry.data_dir()
    try:
        for name in LAB_DATASETS:
            registry.fetch(name, path)
    except RnnlabError as err:
        pytest.fail(f"the lab's datasets could not be fetched into {path}: {err}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def electric_files(shared_data: Path) -> tuple[Path, Path]:
    """ElectricDevices' TRAIN and TEST files: the UCR ``.tsv`` copies, or the lab's ``.csv``."""
    train, test = registry.fetch("electric-devices", shared_data).values()
    return train, test


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
