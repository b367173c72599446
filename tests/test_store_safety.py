"""Kill-safety of the SQLite MLflow store: a command killed (SIGKILL) while it creates the
store leaves either no store or a complete one, so the next command works; a store that a
killed command of an older dhcbench left half-built (every later open failed with
``table … already exists``) is rebuilt when it holds nothing; a store that holds runs is
never rebuilt or lost.

The kills are real SIGKILLs of a subprocess, at chosen steps of the creation (hooks in the
subprocess kill it from inside, for steps too short to hit from outside) and from outside
while the creation runs.

Also the tracker side of liveness, on both trackers: heartbeats, runs of any host taken
for dead when their heartbeat is too old, and a resumed run losing the stale note.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dhcbench.benchmark.memory_tracker import MemoryTracker
from dhcbench.benchmark.sqlite_store import prepare_sqlite_store
from dhcbench.benchmark.tracking import (
    HEARTBEAT,
    HOST,
    NOTE,
    PID,
    STALE_NOTE,
    Tracker,
    is_stale,
    open_tracker,
    owner_tags,
    prepare_store,
)

# argv: store URI, step at which the process kills itself ("" for none).
CREATE = r"""
import os, signal, sys
import sqlalchemy
from dhcbench.benchmark import sqlite_store
from dhcbench.benchmark.tracking import open_tracker

uri, step = sys.argv[1], sys.argv[2]


def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


bumps = []


@sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "after_cursor_execute")
def mid_migration(conn, cursor, statement, *args):
    # Three migrations done, the next one's table created (SQLite commits DDL at once) and
    # its version not yet recorded: the state behind "table ... already exists".
    text = statement.lstrip().upper()
    if text.startswith("UPDATE ALEMBIC_VERSION"):
        bumps.append(text)
    elif step.endswith("mid-migration") and len(bumps) >= 3 and text.startswith("CREATE TABLE"):
        die()


if step == "before-rename":
    sqlite_store._fsync = die  # the temporary file is flushed just before the rename
elif step == "after-rename":
    replace = os.replace

    def replace_then_die(src, dst):
        replace(src, dst)
        die()

    os.replace = replace_then_die
if step == "legacy-mid-migration":  # what dhcbench did before: MLflow builds it in place
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).search_experiments()
else:
    open_tracker(uri, "exp")
print("created")
"""

# argv: store URI. Opens it in a fresh process (MLflow caches opened stores per process),
# without the pauses between attempts.
OPEN = r"""
import sys, time
time.sleep = lambda seconds: None
from dhcbench.benchmark.tracking import open_tracker
from dhcbench.errors import UserError
try:
    open_tracker(sys.argv[1], "exp")
except UserError as exc:
    print(exc)
    sys.exit(2)
"""

STEPS = ["mid-migration", "before-rename", "after-rename", "legacy-mid-migration"]


def _uri(db: Path) -> str:
    return f"sqlite:///{db}"


def _create(db: Path, step: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CREATE, _uri(db), step],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _complete(db: Path) -> bool:
    from mlflow.store.db.utils import _get_latest_schema_revision

    with sqlite3.connect(db) as con:
        (version,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
    return version == _get_latest_schema_revision()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".creating" in p.name)


def _opens_and_keeps_a_run(db: Path) -> None:
    tracker = open_tracker(_uri(db), "exp")
    run_id = tracker.start_run("after-the-kill", {"k": "v"})
    tracker.end(run_id, "FINISHED")
    assert open_tracker(_uri(db), "exp").get(run_id).info.status == "FINISHED"


@pytest.mark.parametrize("step", STEPS)
def test_a_creation_killed_at_any_step_leaves_a_store_the_next_command_opens(
        tmp_path: Path, step: str) -> None:
    db = tmp_path / "mlflow.db"
    proc = _create(db, step)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err[-800:]
    if step == "legacy-mid-migration":
        # The old failure, reproduced: MLflow alone cannot open it (and this process now
        # holds a cached connection to the file, which the rebuild must not reuse).
        from mlflow.tracking import MlflowClient

        with pytest.raises(Exception, match="already exists"):
            MlflowClient(_uri(db)).search_experiments()
        # What a command that only reads does first: repair, without creating anything.
        prepare_store(_uri(db), create=False)
        assert [e.name for e in MlflowClient(_uri(db)).search_experiments()] == ["Default"]
    elif db.exists():  # the store is either absent or complete
        assert step == "after-rename" and _complete(db)
    _opens_and_keeps_a_run(db)
    assert _leftovers(tmp_path) == []


def test_a_creation_killed_from_outside_while_it_runs(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    proc = _create(db)
    temporary = tmp_path / ".mlflow.db.creating"
    deadline = time.monotonic() + 60
    while not temporary.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(0.1)  # into the migrations
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not db.exists() or _complete(db)  # nothing half-built in place
    _opens_and_keeps_a_run(db)
    assert _leftovers(tmp_path) == []


def test_a_store_holding_runs_is_never_rebuilt(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    tracker = open_tracker(_uri(db), "exp")
    run_id = tracker.start_run("kept", {})
    tracker.end(run_id, "FINISHED")
    inode = db.stat().st_ino
    prepare_sqlite_store(db)
    assert db.stat().st_ino == inode
    assert open_tracker(_uri(db), "exp").get(run_id).info.status == "FINISHED"
    # A store with runs that MLflow cannot open: a one-line error, the file left as it is.
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = 'deadbeef0000'")
    proc = subprocess.run([sys.executable, "-c", OPEN, _uri(db)], capture_output=True,
                          text=True, timeout=120)
    message = proc.stdout.strip()
    assert proc.returncode == 2, proc.stderr[-800:]
    assert "\n" not in message and "cannot open the MLflow store" in message
    assert str(db) in message
    assert db.stat().st_ino == inode and _rows(db, "runs") == 1


def test_the_default_store_and_mlflow_tracking_uri_are_created_in_place(
        workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare_store(None, create=False)  # reading commands create nothing
    assert list(workdir.iterdir()) == []
    open_tracker(None, "exp")
    assert _complete(workdir / "mlflow.db") and _leftovers(workdir) == []
    other = tmp_path / "elsewhere" / "store.db"
    other.parent.mkdir()
    other.touch()  # an empty file (what `sqlite3 store.db` leaves) is created too
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _uri(other))
    open_tracker(None, "exp")
    assert _rows(other, "experiments") == 2 and _leftovers(other.parent) == []


# -- liveness ------------------------------------------------------------------------------
NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def _beat(seconds_ago: float) -> dict[str, str]:
    return {HEARTBEAT: (NOW - timedelta(seconds=seconds_ago)).isoformat()}


def test_is_stale_reads_the_heartbeat_only() -> None:
    assert not is_stale({}, NOW)  # no heartbeat: left to the process check
    assert not is_stale({HEARTBEAT: "not a time"}, NOW)
    assert not is_stale(_beat(599), NOW)
    assert is_stale(_beat(601), NOW)
    assert is_stale(_beat(61), NOW, max_age_s=60)
    assert not is_stale(_beat(601), NOW, max_age_s=3600)
    assert is_stale(_beat(601) | {HOST: "elsewhere", PID: "1"}, NOW)  # any host
    assert is_stale(_beat(601), NOW.timestamp())  # seconds since the epoch
    assert is_stale({HEARTBEAT: "2026-01-02T11:49:00"}, NOW.replace(tzinfo=None))  # naive: UTC
    assert is_stale({HEARTBEAT: "2026-01-02T11:49:00Z"}, NOW)


@pytest.fixture(params=["memory", "mlflow"])
def tracker(request: pytest.FixtureRequest, tmp_path: Path) -> Tracker:
    if request.param == "memory":
        return MemoryTracker()
    return open_tracker(_uri(tmp_path / "mlflow.db"), "liveness")


def _drop_tags(tracker: Tracker, run_id: str, keys: list[str]) -> None:
    if isinstance(tracker, MemoryTracker):
        for key in keys:
            del tracker.get(run_id).data.tags[key]
    else:
        for key in keys:
            tracker.client.delete_tag(run_id, key)  # type: ignore[attr-defined]


def test_a_heartbeat_stamps_the_time_and_missing_owner_tags(tracker: Tracker) -> None:
    run_id = tracker.start_run("beating", {})
    _drop_tags(tracker, run_id, [HOST, PID])
    before = datetime.now(UTC).replace(microsecond=0)
    tracker.heartbeat(run_id)
    tags = tracker.get(run_id).data.tags
    beat = datetime.fromisoformat(tags[HEARTBEAT])
    assert beat.tzinfo is not None and before <= beat <= datetime.now(UTC)
    assert {k: tags[k] for k in (HOST, PID)} == owner_tags()
    # a heartbeat never takes a run over from the process that owns it
    tracker.set_tags(run_id, {PID: "1"})
    tracker.heartbeat(run_id)
    assert tracker.get(run_id).data.tags[PID] == "1"
    assert not is_stale(tracker.get(run_id).data.tags, datetime.now(UTC))


def test_runs_of_any_host_with_an_old_heartbeat_are_reaped_and_resume_cleanly(
        tracker: Tracker) -> None:
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    dead = tracker.start_run("dead", {})
    tracker.set_tags(dead, {HOST: "elsewhere", PID: "1", HEARTBEAT: old})
    alive = tracker.start_run("alive", {})
    tracker.set_tags(alive, {HOST: "elsewhere", PID: "1"})
    tracker.heartbeat(alive)
    silent = tracker.start_run("silent", {})  # another host's run that never beat
    tracker.set_tags(silent, {HOST: "elsewhere", PID: "1"})
    assert tracker.reap_stale() == 1
    assert tracker.get(dead).info.status == "FAILED"
    assert tracker.get(dead).data.tags[NOTE] == STALE_NOTE[NOTE]
    assert {tracker.get(r).info.status for r in (alive, silent)} == {"RUNNING"}
    tracker.reopen(dead)
    record = tracker.get(dead)
    assert record.info.status == "RUNNING"
    assert NOTE not in record.data.tags and HEARTBEAT not in record.data.tags
    assert {k: record.data.tags[k] for k in (HOST, PID)} == owner_tags()
    assert tracker.reap_stale() == 0
    # another note is not the stale note: resuming keeps it
    tracker.set_tags(dead, {NOTE: "kept"})
    tracker.end(dead, "FAILED")
    tracker.reopen(dead)
    assert tracker.get(dead).data.tags[NOTE] == "kept"
