"""Checkpoint files that cannot be written (full disk, read-only file system, no
permission) or read back (truncated, corrupt): a one-line UserError naming the file and
the reason, no temporary file left behind, the previous checkpoint kept."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from dhcbench.benchmark import checkpoint
from dhcbench.benchmark.checkpoint import CheckpointError
from dhcbench.errors import UserError

STATE = {"w": torch.arange(1000, dtype=torch.float32), "epoch": 3}
TORCH_WRITE_FAILURE = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


def _write_some(target: Any) -> None:
    """Write a few bytes where torch.save would, as a failing write does before it fails."""
    if hasattr(target, "write"):
        target.write(b"x" * 4096)
    else:
        Path(target).write_bytes(b"x" * 4096)


def _failing_save(exc: BaseException, context: BaseException | None = None):  # noqa: ANN202
    def fake(obj: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        _write_some(target)
        if context is None:
            raise exc
        try:
            raise context
        except type(context):
            raise exc  # noqa: B904 - torch raises it this way: the OSError is its context

    return fake


def _check(caught: pytest.ExceptionInfo[CheckpointError], path: Path, reason: str) -> None:
    message = str(caught.value)
    assert isinstance(caught.value, UserError)
    assert "\n" not in message
    assert message == f"{path}: cannot write the checkpoint ({reason})"
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_an_os_error_while_writing_names_the_file_and_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    path = tmp_path / "run" / checkpoint.LAST
    checkpoint.save({"epoch": 1}, path)  # the previous checkpoint, which must survive
    monkeypatch.setattr(torch, "save", _failing_save(OSError(code, os.strerror(code))))
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save(STATE, path)
    _check(caught, path, os.strerror(code))
    monkeypatch.undo()
    assert checkpoint.load(path) == {"epoch": 1}


def test_torchs_runtime_error_is_traced_to_its_os_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / checkpoint.BEST
    no_space = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", _failing_save(RuntimeError(TORCH_WRITE_FAILURE),
                                                     context=no_space))
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save(STATE, path)
    _check(caught, path, "No space left on device")
    assert not path.exists()


def _statvfs(read_only: bool = False, free_blocks: int = 10**6) -> Any:
    def fake(_path: Any) -> SimpleNamespace:
        return SimpleNamespace(f_flag=os.ST_RDONLY if read_only else 0, f_frsize=4096,
                               f_bfree=free_blocks, f_bavail=free_blocks)

    return fake


@pytest.mark.parametrize(("statvfs", "reason"), [
    (_statvfs(free_blocks=0), "No space left on device"),
    (_statvfs(read_only=True), "Read-only file system"),
    (_statvfs(), "write failed: " + TORCH_WRITE_FAILURE),
])
def test_torchs_runtime_error_without_errno_is_diagnosed_from_the_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statvfs: Any, reason: str) -> None:
    # torch's own C++ writer (a path given to torch.save) keeps no errno.
    path = tmp_path / checkpoint.LAST
    monkeypatch.setattr(torch, "save", _failing_save(RuntimeError(TORCH_WRITE_FAILURE)))
    monkeypatch.setattr(os, "statvfs", statvfs)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save(STATE, path)
    _check(caught, path, reason)


@pytest.mark.parametrize("exc", [RuntimeError("a bug, not a write failure"),
                                 KeyboardInterrupt()])
def test_other_failures_pass_through_but_leave_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    monkeypatch.setattr(torch, "save", _failing_save(exc))
    with pytest.raises(type(exc)) as caught:
        checkpoint.save(STATE, tmp_path / checkpoint.LAST)
    assert not isinstance(caught.value, CheckpointError)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / checkpoint.LAST
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save(STATE, path)
    assert str(caught.value) == f"{path}: cannot write the checkpoint (File exists)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        path = folder / checkpoint.LAST
        with pytest.raises(CheckpointError) as caught:
            checkpoint.save(STATE, path)
        _check(caught, path, "Permission denied")
    finally:
        folder.chmod(0o700)


def test_a_checkpoint_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "deep" / checkpoint.LAST
    checkpoint.save(STATE, path)
    loaded = checkpoint.load(path)
    assert torch.equal(loaded["w"], STATE["w"]) and loaded["epoch"] == 3
    assert sorted(p.name for p in path.parent.iterdir()) == [checkpoint.LAST]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_a_damaged_checkpoint_names_the_file(tmp_path: Path, damage: str) -> None:
    good = tmp_path / "good.pt"
    checkpoint.save(STATE, good)
    path = tmp_path / checkpoint.LAST
    data = {"truncated": good.read_bytes()[:2000], "garbage": b"not a checkpoint" * 50,
            "empty": b""}
    if damage in data:
        path.write_bytes(data[damage])
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    message = str(caught.value)
    assert isinstance(caught.value, UserError) and "\n" not in message
    assert message.startswith(f"{path}: cannot read the checkpoint")
    expected = "No such file or directory" if damage == "missing" else "truncated or corrupt"
    assert expected in message
