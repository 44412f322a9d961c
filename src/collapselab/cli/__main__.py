"""``python -m collapselab.cli``: the same as the ``collapselab`` command."""

from collapselab.cli import main

main()
