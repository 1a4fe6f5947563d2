"""``python -m isobench.cli``: the same as the ``isobench`` command."""

from isobench.cli import main

main(prog_name="isobench")
