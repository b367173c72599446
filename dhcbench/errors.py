"""The one exception type that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (unknown name, bad value, unreadable file).

    The CLI prints ``str(error)`` on one line to stderr and exits with code 2; nothing is
    written to the tracking store before the input has been validated.
    """
