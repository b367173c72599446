"""The one exception type that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (unknown name, bad value, unreadable file).

    The CLI prints ``str(error)`` on one line to stderr and exits with code 2; nothing is
    written to the tracking store before the input has been validated.
    """


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name.

    Library errors (SQL, YAML, torch's writer) span many lines; a one-line message quotes
    this.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
