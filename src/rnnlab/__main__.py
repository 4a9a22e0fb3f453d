"""``python -m rnnlab`` (and ``torchrun -m rnnlab``) run the CLI."""

from rnnlab.cli import main

main()
