"""``python -m fedleak``: the same as the ``fedleak`` command."""

from fedleak.cli import main

main()
