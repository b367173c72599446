"""``python -m dhcbench`` = the ``dhcbench`` command."""

from dhcbench.cli import main

main()
