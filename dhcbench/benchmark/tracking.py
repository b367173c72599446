"""Run tracking behind one small interface, the :class:`Tracker` protocol.

MLflow is its implementation (:class:`dhcbench.benchmark.mlflow_tracker.MlflowTracker`),
with an in-memory one for tests (:mod:`dhcbench.benchmark.memory_tracker`).

One parent run per ``dhcbench run`` invocation and one child run per seed (linked with
MLflow's ``mlflow.parentRunId`` tag, so ``mlflow ui`` nests them). Metrics are sent in
batches (``log_batch``: one SQLite transaction instead of one per value). Every run records
the host and process that own it; :meth:`Tracker.reap_stale` marks runs whose process died
without ending them as FAILED, so nothing stays RUNNING forever.

Runs come back as MLflow-shaped records: ``run.info`` (``run_id``, ``run_name``,
``status``, ``start_time``) and ``run.data`` (``tags``, ``params``, ``metrics``: latest
values). Queries use MLflow's filter syntax, limited to what dhcbench writes: clauses
``tags.`<name>` = '<value>'`` and ``attributes.status = '<STATUS>'`` joined by ``and``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from dhcbench.errors import UserError

ROLE = "dhcbench.role"
KEY = "dhcbench.key"
SEED_KEY = "dhcbench.seed_key"
PID = "dhcbench.pid"
HOST = "dhcbench.host"
CHECKPOINT_DIR = "dhcbench.checkpoint_dir"
PARENT = "mlflow.parentRunId"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@runtime_checkable
class Tracker(Protocol):
    """Where runs are written and read back, for one experiment (run ids are strings)."""

    def start_run(self, name: str, tags: Mapping[str, Any], parent_id: str | None = None
                  ) -> str:
        """A new RUNNING run (a child of ``parent_id`` when given); returns its id."""
        ...

    def reopen(self, run_id: str) -> None:
        """Mark an ended run RUNNING again, owned by this process (``--resume``)."""
        ...

    def end(self, run_id: str, status: str) -> None:
        """``FINISHED``, ``FAILED`` or ``KILLED``."""
        ...

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Values of several metrics at ``step``."""
        ...

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Parameters (stored as strings)."""
        ...

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Tags (stored as strings); an existing tag is overwritten."""
        ...

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None
                     ) -> None:
        """A copy of the file ``path`` under the run's ``artifact_path`` folder."""
        ...

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """``text`` as the artifact ``artifact_file``."""
        ...

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure as a PNG artifact; the figure is closed."""
        ...

    def download_artifact(self, run_id: str, artifact: str, dest: Path) -> Path:
        """The artifact copied into the folder ``dest``; its local path."""
        ...

    def get(self, run_id: str) -> Any:
        """The run record."""
        ...

    def search(self, filter_string: str = "", max_results: int = 50000) -> list[Any]:
        """Runs of the experiment matching the filter, newest first."""
        ...

    def children(self, parent_id: str) -> list[Any]:
        """The runs whose parent is ``parent_id``, newest first."""
        ...

    def history(self, run_id: str, prefix: str) -> dict[str, list[tuple[int, float]]]:
        """``{metric: [(step, value), …]}`` for every metric of the run under ``prefix``."""
        ...

    def weight_history(self, run_id: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """``{branch: {class: [(epoch, weight), …]}}`` from ``train/weight_<branch>/<class>``."""
        ...

    def reap_stale(self) -> int:
        """Mark RUNNING runs whose owning process on this host is gone as FAILED."""
        ...


def owner_tags() -> dict[str, str]:
    """The tags that say which process on which host owns a RUNNING run."""
    return {PID: str(os.getpid()), HOST: socket.gethostname()}


def weight_series(history: Mapping[str, list[tuple[int, float]]]
                  ) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``train/weight_<branch>/<class>`` histories regrouped by branch and class."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for key, points in history.items():
        branch, cls = key[len("train/weight_"):].split("/", 1)
        series.setdefault(branch, {})[cls] = points
    return series


def stale_runs(running: list[Any]) -> list[str]:
    """Ids of the RUNNING runs owned by a process of this host that no longer exists."""
    host = socket.gethostname()
    return [run.info.run_id for run in running
            if run.data.tags.get(HOST) == host and PID in run.data.tags
            and not _pid_alive(int(run.data.tags[PID]))]


STALE_NOTE = {"dhcbench.note": "process ended without closing the run; marked FAILED"}


def reap_stale_runs(tracker: Tracker) -> int:
    """Mark the tracker's RUNNING runs whose owning process on this host is gone as FAILED.

    This is what every implementation's ``reap_stale`` does: each such run gets a note tag
    saying why, then ends FAILED. Runs owned by other hosts are left alone. Returns how many
    runs were marked.
    """
    stale = stale_runs(tracker.search("attributes.status = 'RUNNING'"))
    for run_id in stale:
        tracker.set_tags(run_id, STALE_NOTE)
        tracker.end(run_id, "FAILED")
    return len(stale)


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


def open_tracker(uri: str | None, experiment: str) -> Tracker:
    """An MLflow tracker, with an actionable error when the store cannot be opened or written."""
    if uri is None and not os.environ.get("MLFLOW_TRACKING_URI"):
        here = Path.cwd()
        if not os.access(here, os.W_OK):
            raise UserError(
                f"{here}: the working folder is not writable, so MLflow cannot create its"
                " store here; set MLFLOW_TRACKING_URI or --set tracking.uri=..."
            )
    # Several processes opening a new database store at once (a job array, parallel tuning)
    # race to create its tables or the experiment. For an SQLite file, a lock file beside it
    # serialises the creation (its schema migration is not safe to run twice at once); for a
    # server store the losers succeed on a second try.
    from dhcbench.benchmark.mlflow_tracker import MlflowTracker

    for attempt in range(4):
        try:
            with sqlite_creation_lock(uri):
                return MlflowTracker(uri, experiment)
        except UserError:
            raise
        except Exception as exc:  # MLflow raises several types for unreachable stores
            if attempt == 3:
                raise UserError(
                    f"cannot open the MLflow store {uri or '(default)'}: {exc}") from exc
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")
