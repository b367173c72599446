"""Checkpoint files: written atomically, read back onto any device.

``last.pt`` holds the full training state (networks, optimisers, AMP scaler, method extra
state such as weighting strategies, sampler and framework RNG states, loop position and
best-so-far bookkeeping); ``best.pt`` holds the method state of the best evaluation epoch.

A checkpoint that cannot be written (full disk, read-only file system, no permission) or
read back (truncated, corrupt) raises :class:`CheckpointError`, a UserError whose one-line
message names the file and the reason; a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any

import torch

from dhcbench.errors import UserError, first_line

LAST = "last.pt"
BEST = "best.pt"
#: Below this much free space after a failed write, the disk is taken to be full.
_FULL_BYTES = 16 * 2**20
#: Words of torch's own messages when its C++ writer fails (it keeps no errno).
_TORCH_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "file write failed",
                         "iostream error", "unexpected pos")


class CheckpointError(UserError):
    """A checkpoint file that cannot be written or read back.

    The message is one line: the file's path, what failed and why, such as
    ``runs/x/last.pt: cannot write the checkpoint (No space left on device)``.
    """


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError that ``exc`` is or that it was raised from (its cause or context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _os_reason(err: OSError) -> str:
    """``No space left on device`` and the like: the system's words for the error."""
    if err.errno is not None:
        return os.strerror(err.errno)
    return err.strerror or first_line(err)


def _folder_reason(folder: Path) -> str | None:
    """Why writing into ``folder`` fails, judged from the folder itself; None if no clue.

    Used for torch's writer, which reports a failed write without its errno.
    """
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS)
    free = stats.f_frsize * (stats.f_bfree if os.geteuid() == 0 else stats.f_bavail)
    if free < _FULL_BYTES:
        return os.strerror(errno.ENOSPC)
    if not os.access(folder, os.W_OK):
        return os.strerror(errno.EACCES)
    return None


def _write_failure(exc: BaseException, folder: Path) -> str | None:
    """The reason of a failed write, or None when ``exc`` is not a write failure."""
    err = _os_error(exc)
    if err is not None:
        return _os_reason(err)
    if isinstance(exc, RuntimeError) and any(w in str(exc) for w in _TORCH_WRITE_FAILURES):
        return _folder_reason(folder) or f"write failed: {first_line(exc)}"
    return None


def _remove(path: Path) -> None:
    """Delete ``path`` if it is there; a failure to delete is ignored."""
    with contextlib.suppress(OSError):
        path.unlink()


def save(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file.

    The file is flushed to the disk before the rename. Any failure to write (OSError, or
    torch's RuntimeError for a failed write) is a :class:`CheckpointError` naming ``path``
    and the reason; the temporary file is removed whatever the failure.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        reason = _write_failure(exc, path.parent) if isinstance(exc, Exception) else None
        _remove(tmp)
        if reason is None:
            raise
        raise CheckpointError(f"{path}: cannot write the checkpoint ({reason})") from exc


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (the trainer moves what it needs).

    A file that cannot be opened, or is truncated or corrupt, is a :class:`CheckpointError`
    naming ``path`` and the reason.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except OSError as exc:
        raise CheckpointError(
            f"{path}: cannot read the checkpoint ({_os_reason(exc)})") from exc
    except Exception as exc:  # a damaged file fails in the zip reader or the unpickler
        raise CheckpointError(
            f"{path}: cannot read the checkpoint, the file is truncated or corrupt"
            f" ({type(exc).__name__}: {first_line(exc).split('. ')[0]})") from exc
