"""What every command module shares: the Typer app, the consoles, the error handling.

A command reports bad input one way only (:func:`user_errors`: one line on stderr, exit
code 2). Help pages show a placeholder after an option only where the option takes a value
(:func:`placeholder`).
"""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
import typer.core
from rich.console import Console

from dhcbench.allocator import tune_cpu_allocator
from dhcbench.errors import UserError

#: What each value of ``--variant`` means (``run``'s help, ``dhcbench methods METHOD``). The
#: CLI does not import the method registry to start up (that would import torch), so the
#: names are listed here; a test checks they cover every variant a method registers.
VARIANTS: dict[str, str] = {
    "reference": "as the official DHC code, which produced the published tables (default)",
    "paper": "the DHC paper's equations where the code differs (DHC, CPS, the pairings)",
    "fixed": "the method's own paper where the DHC code departs from it",
}


def variant_help() -> str:
    """The help of ``--variant``: every variant with its meaning."""
    meanings = "; ".join(f"{name}: {text}" for name, text in VARIANTS.items())
    return f"{meanings}. Which variants a method has: `dhcbench methods METHOD`."


#: Placeholders of value options in help pages, by long option name; other options get one
#: from their type (N, NUMBER, PATH) or their name.
PLACEHOLDERS: dict[str, str] = {
    "method": "METHOD", "methods": "METHODS", "baseline": "METHOD", "dataset": "DATASET",
    "ratio": "RATIO", "variant": "VARIANT", "set": "KEY=VALUE", "config": "FILE",
    "seed-list": "SEEDS", "run": "RUN_ID", "experiment": "NAME", "study": "NAME",
    "partition": "NAME", "uri": "URI", "storage": "URL", "params": "NAMES", "case": "CASE_ID",
    "spacing": "Z,Y,X", "time": "MINUTES", "mri-normalization": "MODE",
}
_TYPE_PLACEHOLDERS = {int: "N", float: "NUMBER"}


def placeholder(param: Any) -> str | None:
    """The placeholder shown after ``param`` in a help page, or None for none.

    An argument gets none (its name, or metavar, is shown already). For an option an
    explicit ``metavar`` wins, a flag (``--resume``) gets none, and a value option gets
    :data:`PLACEHOLDERS`' entry for its long name, else one from its type: ``N`` (int),
    ``NUMBER`` (float), ``PATH``, or its name in capitals.
    """
    if getattr(param, "param_type_name", "") != "option":
        return None
    if param.metavar is not None:
        return param.metavar or None
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    name = max(param.opts, key=len).lstrip("-") if param.opts else str(param.name)
    if name in PLACEHOLDERS:
        return PLACEHOLDERS[name]
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if getattr(descriptor, "is_list", False):
        annotation = typing.get_args(annotation)[0]
    if getattr(descriptor, "is_path", False):
        return "PATH"
    return _TYPE_PLACEHOLDERS.get(annotation, name.upper().replace("-", "_"))  # type: ignore[call-overload]


def _use_placeholders() -> None:
    """Make every help page show :func:`placeholder` instead of Typer's type labels.

    Recent Typers label every parameter with its Python type (``--resume <bool>``,
    ``--set <list[str]>``), flags included, and offer no setting to turn that off; both the
    rich and the plain help pages read it from ``display_type_rich``, replaced here. Older
    Typers, which lack it, are left as they are.
    """
    for name in ("TyperOption", "TyperArgument"):
        cls = getattr(typer.core, name, None)
        if cls is not None and hasattr(cls, "display_type_rich"):
            cls.display_type_rich = lambda self, ctx: placeholder(self)


_use_placeholders()

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
    inherited by worker processes. The CPU allocator is tuned here too, for every command
    (:mod:`dhcbench.allocator`).
    """
    import logging

    del version
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tune_cpu_allocator()


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
