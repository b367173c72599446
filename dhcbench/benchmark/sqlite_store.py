"""Local SQLite MLflow stores: located, locked, created atomically, repaired.

MLflow builds a new store's tables in many steps, each committed on its own, so a process
killed half-way used to leave a file that every later open failed on ("table … already
exists"). Here a store is built in a temporary file beside the target, under an exclusive
lock, and renamed into place (:func:`create_sqlite_store`); a store an older version left
half-built and empty is rebuilt (:func:`prepare_sqlite_store`). Nothing here imports MLflow
at module level, so commands that only read stay light.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from dhcbench.errors import UserError

#: Files SQLite keeps beside a database while it writes it.
_SIDECARS = ("-journal", "-wal", "-shm")


def _remove_db_files(db: Path, sidecars_only: bool = False) -> None:
    """Delete ``db`` (unless ``sidecars_only``) and its journal files, where they exist."""
    names = [db.name + suffix for suffix in _SIDECARS]
    for name in names if sidecars_only else [db.name, *names]:
        with contextlib.suppress(FileNotFoundError):
            db.with_name(name).unlink()


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _holds_nothing(db: Path) -> bool:
    """Whether the SQLite file ``db`` exists but none of its tables holds a row.

    That is a store whose creation was interrupted (MLflow adds its ``Default`` experiment
    only once every table is built), so rebuilding it loses nothing. False for a store with
    any row, and for a file that SQLite cannot read (MLflow then reports it). Opening the
    file rolls back a transaction a killed process left in its journal.
    """
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
            tables = [name for (name,) in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'")]
            if "experiments" in tables and con.execute(
                    "SELECT 1 FROM experiments LIMIT 1").fetchone():
                return False  # the usual case, answered by one query
            return not any(con.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone()
                           for name in tables)
    except sqlite3.Error:
        return False


def _at_latest_schema(db: Path) -> bool:
    """Whether the store ``db`` records MLflow's latest schema version (fully migrated).

    Each migration records its version once its changes are in, so a store at the latest
    version is complete even when it holds no row yet.
    """
    from mlflow.store.db.utils import _get_latest_schema_revision

    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == _get_latest_schema_revision()


def _no_sync(dbapi_connection: Any, _record: Any) -> None:
    """SQLite settings for building a throw-away file: no journal, no flush per statement.

    Safe for the temporary file only: it is discarded on any failure and flushed once,
    whole, before it is renamed into place. Creating a store drops from seconds to
    under one on a disk that honours flushes.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = OFF")
    cursor.execute("PRAGMA journal_mode = MEMORY")
    cursor.close()


def create_sqlite_store(db: Path) -> None:
    """Create the MLflow store ``db`` (an SQLite file) atomically.

    The tables are built and migrated to MLflow's latest schema in ``.<name>.creating``
    beside ``db``, which is flushed to disk and then renamed onto ``db``: a process killed
    at any moment leaves either no store (or the one that was there) or a complete one. A
    leftover temporary file of a killed creation is removed first; the temporary file is
    removed on any failure. Run it under :func:`dhcbench.benchmark.tracking.
    sqlite_creation_lock`, which makes the creation one process's job.
    """
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    tmp = db.with_name(f".{db.name}.creating")
    _remove_db_files(tmp)
    try:
        engine = sqlalchemy.create_engine(
            sqlalchemy.engine.URL.create("sqlite", database=str(tmp)),
            poolclass=sqlalchemy.pool.NullPool)
        sqlalchemy.event.listen(engine, "connect", _no_sync)
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        _fsync(tmp)
        # A journal left beside ``db`` would be replayed onto the new file: drop it first.
        _remove_db_files(db, sidecars_only=True)
        os.replace(tmp, db)
        _fsync(db.parent)
    except BaseException:
        _remove_db_files(tmp)
        raise


def _forget_engines(db: Path) -> None:
    """Drop MLflow's cached connections to the file ``db`` replaced (they see the old one).

    MLflow keeps one engine per store URI for the life of the process; after a rebuild an
    engine made before it would still read the unlinked half-built file.
    """
    with contextlib.suppress(Exception):  # MLflow internals: best effort
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        engines = SqlAlchemyStore._engine_map
        for key, engine in list(engines.items()):
            name = engine.url.database
            if engine.url.get_backend_name() == "sqlite" and name and Path(
                    name).resolve() == db.resolve():
                engine.dispose()
                engines.pop(key, None)


def prepare_sqlite_store(db: Path, create: bool = True) -> None:
    """Make sure the SQLite file ``db`` holds a complete MLflow store before MLflow opens it.

    A missing or empty file is created with :func:`create_sqlite_store` (left alone when
    ``create`` is False, for commands that only read). A file whose tables hold no row at
    all and whose schema is not fully migrated (a creation killed by a dhcbench before this
    one, which built the tables in place) is rebuilt the same way, with a one-line note on
    stderr; a store that holds anything, runs or experiments, is never touched. Call it
    under the creation lock.
    """
    if not (db.is_file() and db.stat().st_size > 0):
        if create:
            create_sqlite_store(db)
        return
    if not _holds_nothing(db) or _at_latest_schema(db):
        _remove_db_files(db.with_name(f".{db.name}.creating"))  # a killed rebuild's
        return
    print(f"note: {db} held no runs and was left half-created by an interrupted command;"
          " created it again", file=sys.stderr)
    create_sqlite_store(db)
    _forget_engines(db)


def require_store(uri: str | None) -> None:
    """For commands that only read runs: refuse to create an empty store by accident."""
    if uri is None and not os.environ.get("MLFLOW_TRACKING_URI") and not Path(
            "mlflow.db").is_file():
        raise UserError("no MLflow store here (no mlflow.db in this folder and no"
                        " MLFLOW_TRACKING_URI); run `dhcbench run` in this folder first,"
                        " or pass --uri")


def _sqlite_file(uri: str | None) -> Path | None:
    """The database file of an ``sqlite:///`` URI (the default store when ``uri`` is None)."""
    if uri is None:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


@contextlib.contextmanager
def sqlite_creation_lock(uri: str | None) -> Iterator[None]:
    """Hold an exclusive lock on ``<db>.lock`` while an SQLite store is opened.

    POSIX only; elsewhere, for server stores, and while the database's folder does not exist
    yet, a no-op. The lock file stays beside the database.
    """
    db = _sqlite_file(uri)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None  # type: ignore[assignment]
    if db is None or fcntl is None or not db.parent.is_dir():
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sqlite_store_file(uri: str | None) -> Path | None:
    """The database file of the MLflow store ``uri`` when it is a local SQLite file.

    ``None`` is resolved as MLflow resolves it (``MLFLOW_TRACKING_URI``, else MLflow's
    default: ``./mlflow.db``, or the ``./mlruns`` folder where one already holds runs).
    Returns None for any other kind of store, and for an in-memory database.
    """
    if uri is None:
        import mlflow

        uri = mlflow.get_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    name = unquote(uri[len("sqlite:///"):].split("?", 1)[0])
    return None if name in ("", ":memory:") else Path(name)


def prepare_store(uri: str | None, create: bool = True) -> None:
    """Make a local SQLite store safe for MLflow to open; any other store is left alone.

    Under the creation lock beside the file: a missing store is created atomically (unless
    ``create`` is False: commands that only read create nothing), and one that an
    interrupted creation of an older dhcbench left half-built and empty is rebuilt (see
    :func:`prepare_sqlite_store`). :func:`open_tracker`
    does this itself; call it before opening a store any other way (``MlflowClient``).
    """
    db = sqlite_store_file(uri)
    if db is None or (not create and not db.is_file()):
        return
    if not create and (not _holds_nothing(db) or _at_latest_schema(db)):
        return  # a sound store: a reader takes no lock and writes nothing, not even the lock
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite_creation_lock(f"sqlite:///{db}"):
        prepare_sqlite_store(db, create)


