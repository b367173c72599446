"""The tracking store as the commands see it: which one, and checks before it is opened.

Commands that only read runs (``table``, ``plot``, ``predict``, ``sweep --dry-run``) never
create a store nor an experiment: a missing store file or experiment is a UserError naming
it. Commands that write (``run``, ``tune``, ``sweep``) check that the store can be created or
written before they open it, once every other input has been checked. Every message names
where the store's URI came from: the option, ``MLFLOW_TRACKING_URI=...`` or the default
``./mlflow.db``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dhcbench.benchmark.sqlite_store import sqlite_store_file
from dhcbench.cli.common import nearest_existing
from dhcbench.errors import UserError, first_line

#: URI schemes of stores MLflow reaches over the network (not checked before opening).
REMOTE_SCHEMES = ("http", "https", "databricks", "postgresql", "mysql", "mssql")


@dataclass(frozen=True)
class Store:
    """A tracking store: its URI (None: MLflow's default), how it was chosen, its local path.

    ``source`` is the text messages use; ``path`` is the SQLite file or the folder of a file
    store, None for a remote store; ``sqlite`` tells which of the two ``path`` is.
    """

    uri: str | None
    source: str
    path: Path | None
    sqlite: bool


def resolve_store(uri: str | None, option: str = "--uri") -> Store:
    """The store named by ``uri`` (given as ``option``), ``MLFLOW_TRACKING_URI`` or the default.

    An empty URI or one of a scheme MLflow cannot open is a UserError naming its source.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if uri is not None:
        text, source = uri, f"{option} {uri}"
    elif env is not None:
        text, source = env, f"MLFLOW_TRACKING_URI={env}"
    else:
        return Store(None, "the default store ./mlflow.db", Path("mlflow.db"), True)
    if not text.strip():
        raise UserError(f"{source}: empty tracking URI")
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme == "sqlite":
        if not text.startswith("sqlite:///") or len(text) == len("sqlite:///"):
            raise UserError(f"{source}: expected sqlite:///<file> (an SQLite file store)")
        # The file as MLflow reads it: without ?options, with %-escapes decoded.
        db = sqlite_store_file(text)
        return Store(text, source, db if db is not None else Path(text[len("sqlite:///"):]),
                     True)
    if scheme == "file":
        return Store(text, source, Path(parsed.path), False)
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return Store(text, source, Path(text), False)
    if scheme.split("+")[0] in REMOTE_SCHEMES:
        return Store(text, source, None, False)
    raise UserError(f"{source}: unknown tracking URI scheme {scheme!r} (use sqlite:///<file>,"
                    f" a folder, or {', '.join(REMOTE_SCHEMES)})")


def require_existing(uri: str | None, experiment: str, option: str = "--uri") -> None:
    """For commands that only read: the store and the experiment must exist already.

    Nothing is created: a missing store file (or folder), an unreadable store or an
    unknown experiment is a UserError naming the store's source (and the experiments it
    has).
    """
    store = resolve_store(uri, option)
    if store.path is not None and not (store.path.is_file() if store.sqlite
                                       else store.path.is_dir()):
        if store.uri is None:
            raise UserError("no MLflow store here (no mlflow.db in this folder and no"
                            " MLFLOW_TRACKING_URI); run `dhcbench run` in this folder first,"
                            " or pass --uri")
        kind = "file" if store.sqlite else "folder"
        raise UserError(f"{store.source}: no MLflow store there (no {kind} {store.path});"
                        " check the URI, or run `dhcbench run` with it first")
    names = experiment_names(store)
    if experiment not in names:
        raise UserError(f"--experiment {experiment!r}: no such experiment in {store.source}"
                        f" (experiments: {', '.join(sorted(names)) or 'none'})")


def experiment_names(store: Store) -> list[str]:
    """The active experiments of an existing store; a UserError if it cannot be read."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from dhcbench.benchmark.tracking import prepare_store

    uri = store.uri or f"sqlite:///{Path('mlflow.db').resolve()}"
    try:
        prepare_store(uri, create=False)  # repairs a store whose creation was killed
        client = MlflowClient(tracking_uri=uri)
        return [e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    except Exception as exc:  # MLflow raises many types for unreadable stores
        raise UserError(f"cannot read the MLflow store ({store.source}):"
                        f" {type(exc).__name__}: {first_line(exc)}") from exc


def existing_tracker(uri: str | None, experiment: str) -> Any:
    """A tracker of the experiment if the store and the experiment exist, else None.

    A URI of an unknown scheme or an unreadable store is still a UserError. Creates nothing (``sweep --dry-run`` counts the jobs of a store that may not exist yet).
    """
    from dhcbench.benchmark.mlflow_tracker import MlflowTracker

    store = resolve_store(uri)
    if store.path is not None and not store.path.exists():
        return None
    if experiment not in experiment_names(store):
        return None
    return MlflowTracker(uri, experiment)  # the experiment exists: nothing is created


def check_writable_store(uri: str | None, option: str = "tracking.uri") -> Store:
    """For commands that write: a UserError unless the store can be created or written.

    An SQLite file must be a writable file or go into an existing writable folder; a file
    store's nearest existing folder must be writable; remote stores are not checked here.
    Creates nothing.
    """
    store = resolve_store(uri, option)
    path = store.path
    if path is None:
        return store
    if store.sqlite:
        if path.exists() and not path.is_file():
            raise UserError(f"{store.source}: {path} is not an SQLite file")
        if path.exists() and not os.access(path, os.W_OK):
            raise UserError(f"{store.source}: {path} is not writable")
        target = path.parent
        if not target.is_dir():
            raise UserError(f"{store.source}: the folder {target} of the store does not exist")
    else:
        target = nearest_existing(path)
        if not target.is_dir():
            raise UserError(f"{store.source}: {target} is not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        where = "the working folder " if store.uri is None else ""
        raise UserError(f"{store.source}: {where}{target.absolute()} is not writable, so MLflow cannot"
                        " write its store there; set MLFLOW_TRACKING_URI or --set"
                        " tracking.uri=...")
    return store


def open_store(uri: str | None, experiment: str, option: str = "tracking.uri") -> Any:
    """Check (:func:`check_writable_store`) and open the store, creating the experiment.

    Call it once every other input is checked. A store that cannot be opened is a UserError
    naming its source.
    """
    from dhcbench.benchmark.tracking import open_tracker

    store = check_writable_store(uri, option)
    try:
        return open_tracker(store.uri, experiment)
    except UserError as exc:
        message = str(exc)
        if store.uri is None:
            message = message.replace("(default)", f"({store.source})")
        elif store.uri in message and store.source not in message:
            message = message.replace(store.uri, f"({store.source})", 1)
        raise UserError(message) from None
