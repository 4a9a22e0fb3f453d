"""``import rnnlab`` and the CLI start without torch; the package's public names load on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rnnlab
import rnnlab.data


def test_the_package_and_its_cli_start_without_torch():
    # torch's import takes about 1.5 s: `rnnlab --help` and `rnnlab data list` need none of it.
    code = "import sys, rnnlab, rnnlab.cli, rnnlab.cli.data; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("package", [rnnlab, rnnlab.data])
def test_every_public_name_loads_and_is_listed(package):
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = package.nope
