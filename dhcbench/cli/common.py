"""What every command module shares: the Typer app, the consoles, the error handling.

A command reports bad input one way only (:func:`user_errors`: one line on stderr, exit
code 2).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from dhcbench.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Class-imbalanced semi-supervised 3D segmentation benchmark: DHC and its baselines.",
    pretty_exceptions_enable=False,
)
console = Console(log_path=False)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _print_version(value: bool) -> None:
    """``--version``: print the package version and exit."""
    if value:
        from dhcbench import __version__

        console.print(f"dhcbench {__version__}")
        raise typer.Exit()


@app.callback()
def _quiet_libraries(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """Keep the terminal for dhcbench's own output: MLflow's INFO chatter is dropped.

    MLflow sets its loggers' level when it is imported (later, by a command), from
    ``MLFLOW_LOGGING_LEVEL``; so that variable is set here, before any import of MLflow, and
    inherited by worker processes.
    """
    import logging

    del version
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def parse_dataset(text: str) -> tuple[str, dict]:
    """Split a ``--dataset`` value into the registry key and its options.

    ``nnunet:<name>`` -> ``("nnunet", {"name": <name>})``; other names have no options.
    """
    name, _, option = text.partition(":")
    return name, ({"name": option} if option else {})


def nearest_existing(path: Path) -> Path:
    """``path`` made absolute, or its nearest ancestor that exists (what a write would need)."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def check_out_folder(folder: Path, option: str, exists: bool = False) -> None:
    """A UserError unless ``folder`` is, or can be created as, a writable folder.

    Creates nothing: a missing folder needs its nearest existing ancestor to be a writable
    folder (with ``exists``, the folder itself must exist). The message names ``option``.
    """
    if exists and not folder.is_dir():
        raise UserError(f"{option} {folder}: no such folder")
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise UserError(f"{option} {folder}: cannot be a folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {folder}: cannot be written (no write permission on"
                        f" {existing})")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with ``code``.

    The message is printed as is (no rich markup) and not wrapped, so it stays one line; a
    message of several lines (a library's) is joined into one.
    """
    print_error(message)
    raise typer.Exit(code)


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, as one line: as is (no rich markup), never wrapped.

    A message of several lines (a library's) is joined into one.
    """
    if "\n" in message:
        message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


def interrupted(exc: BaseException, what_now: str) -> NoReturn:
    """End an interrupted run or sweep: say so and what to do next, exit with 130.

    ``exc`` is the interruption (its text, or ``KeyboardInterrupt``, is shown);
    ``what_now`` tells the user how to resume.
    """
    err_console.print(f"interrupted: {exc or 'KeyboardInterrupt'}; {what_now}")
    raise typer.Exit(130) from None


def user_errors(command: F) -> F:
    """Decorate a command so a :class:`UserError` it raises becomes :func:`fail`.

    The error's message goes to stderr as one line and the exit code is 2; other
    exceptions pass through.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]
