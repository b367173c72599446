"""The ``dhcbench`` command line (Typer). Thin: parses, builds specs, calls the parts.

Every error caused by the input is one line on stderr and exit code 2 (``UserError``, via
:func:`dhcbench.cli.common.user_errors`); an interrupted run exits with 130 after marking its
MLflow runs KILLED. Commands live by topic in ``training``, ``results`` and ``data``.
"""

from __future__ import annotations

import sys

# isort: off
# Importing the command modules registers their commands, in this order in --help.
from dhcbench.cli import training, results, data  # noqa: F401
# isort: on
from dhcbench.cli.common import app, console, err_console
from dhcbench.errors import UserError

__all__ = ["app", "console", "main"]


def main() -> None:
    """Console-script entry point: run the Typer app.

    A UserError raised outside a command's own handler still ends as one line on stderr
    with exit code 2.
    """
    try:
        app()
    except UserError as exc:  # raised outside a command's own handler
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
