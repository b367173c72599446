"""The ``dhcbench`` command line (Typer). Thin: parses, builds specs, calls the parts.

Every error caused by the input is one line on stderr and exit code 2 (``UserError``, via
:func:`dhcbench.cli.common.user_errors`); an interrupted run exits with 130 after marking its
MLflow runs KILLED. Commands live by topic in ``training``, ``results`` and ``data``.
"""

from __future__ import annotations

import sys
from typing import NoReturn

# isort: off
# Importing the command modules registers their commands, in this order in --help.
from dhcbench.cli import training, results, data  # noqa: F401
# isort: on
from dhcbench.cli.common import app, console, print_error
from dhcbench.errors import UserError

__all__ = ["app", "console", "main"]


def _exit(message: str, code: int) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and end the process with ``code``."""
    print_error(" ".join(message.split()))
    sys.exit(code)


def main() -> None:
    """Console-script entry point: run the Typer app.

    A UserError raised outside a command's own handler, and a usage error found by the
    parser itself (an unknown option, ``--seeds abc``), also end as one line on stderr with
    exit code 2, instead of the parser's framed message.
    """
    import typer

    # The parser's exceptions: click's, or the copy of click that newer Typers carry.
    parser = sys.modules[typer.BadParameter.__module__]
    abort = getattr(parser, "Abort", ())  # () catches nothing: Typer's copy has no Abort
    try:
        code = app(standalone_mode=False)
    except UserError as exc:  # raised outside a command's own handler
        _exit(str(exc), 2)
    except parser.UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _exit(exc.format_message() + where, 2)
    except parser.ClickException as exc:
        _exit(exc.format_message(), exc.exit_code)
    except abort:
        _exit("aborted", 1)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
