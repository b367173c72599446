"""Run tracking behind one small interface, the :class:`Tracker` protocol.

MLflow is its implementation (:class:`dhcbench.benchmark.mlflow_tracker.MlflowTracker`),
with an in-memory one for tests (:mod:`dhcbench.benchmark.memory_tracker`).

One parent run per ``dhcbench run`` invocation and one child run per seed, nested in
``mlflow ui`` by ``mlflow.parentRunId``; metrics go in batches. Every run records its owner
(host, process) and a heartbeat; :meth:`Tracker.reap_stale` marks runs whose process died
without ending them as FAILED, so nothing stays RUNNING forever. An SQLite store is created
atomically (:func:`open_tracker`): built in a temporary file under a lock, then renamed.

Runs come back as MLflow-shaped records: ``run.info`` (``run_id``, ``run_name``,
``status``, ``start_time``) and ``run.data`` (``tags``, ``params``, ``metrics``: latest
values). Queries use MLflow's filter syntax, limited to what dhcbench writes: clauses
``tags.`<name>` = '<value>'`` and ``attributes.status = '<STATUS>'`` joined by ``and``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from dhcbench.benchmark.sqlite_store import (
    prepare_sqlite_store,
    sqlite_creation_lock,
    sqlite_store_file,
)
from dhcbench.benchmark.sqlite_store import prepare_store as prepare_store
from dhcbench.benchmark.sqlite_store import require_store as require_store
from dhcbench.errors import UserError, first_line

ROLE = "dhcbench.role"
KEY = "dhcbench.key"
SEED_KEY = "dhcbench.seed_key"
PID = "dhcbench.pid"
HOST = "dhcbench.host"
CHECKPOINT_DIR = "dhcbench.checkpoint_dir"
HEARTBEAT = "dhcbench.heartbeat"
NOTE = "dhcbench.note"
#: Why a run ended FAILED (the runner writes it); here so readers need not import the engine.
FAILURE = "dhcbench.failure"
PARENT = "mlflow.parentRunId"
#: A RUNNING run whose heartbeat is older than this (seconds) is taken for dead.
HEARTBEAT_MAX_AGE_S = 600.0


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
        """Mark an ended run RUNNING again, owned by this process (``--resume``).

        The note left by :func:`reap_stale_runs` and the old heartbeat are removed.
        """
        ...

    def heartbeat(self, run_id: str) -> None:
        """Record that the run's process is alive now (see :func:`heartbeat_tags`)."""
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

    def log_dataset(self, run_id: str, fields: Mapping[str, str], context: str) -> None:
        """The run's dataset as a run input (name, digest, source, profile)."""
        ...

    def log_model(self, run_id: str, model: Any, requirements: list[str]) -> None:
        """A trained model as the run's ``model``."""
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


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (what heartbeats are stamped with)."""
    return datetime.now(UTC)


def heartbeat_tags(existing: Mapping[str, str], now: datetime | None = None
                   ) -> dict[str, str]:
    """The tags one heartbeat writes, given the run's ``existing`` tags.

    Always ``dhcbench.heartbeat``: ``now`` (default: the current time) in ISO 8601, UTC;
    the owner tags (``dhcbench.host``, ``dhcbench.pid``) only where the run lacks them, so
    a heartbeat never takes a run over from the process that owns it.
    """
    tags = {HEARTBEAT: (now or utc_now()).astimezone(UTC).isoformat(timespec="seconds")}
    tags.update({k: v for k, v in owner_tags().items() if k not in existing})
    return tags


def is_stale(tags: Mapping[str, str], now: datetime | float,
             max_age_s: float = HEARTBEAT_MAX_AGE_S) -> bool:
    """Whether a RUNNING run with these tags has missed its heartbeats, on any host.

    True when its ``dhcbench.heartbeat`` is more than ``max_age_s`` seconds before ``now``
    (a datetime, or seconds since the epoch). A run that never sent a heartbeat, or whose
    heartbeat cannot be parsed, is not stale by this test (the process check of
    :func:`stale_runs` still applies to it). The caller passes RUNNING runs only.
    """
    stamp = tags.get(HEARTBEAT)
    if not stamp:
        return False
    try:
        beat = datetime.fromisoformat(stamp)
    except ValueError:
        return False
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    if not isinstance(now, datetime):
        now = datetime.fromtimestamp(float(now), UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - beat).total_seconds() > max_age_s


def stale_runs(running: list[Any], now: datetime | None = None,
               max_age_s: float = HEARTBEAT_MAX_AGE_S) -> list[str]:
    """Ids of the RUNNING runs taken for dead.

    Either owned by a process of this host that no longer exists, or (any host) with a
    heartbeat older than ``max_age_s`` seconds before ``now`` (see :func:`is_stale`).
    """
    host = socket.gethostname()
    now = now or utc_now()
    return [run.info.run_id for run in running
            if (run.data.tags.get(HOST) == host and PID in run.data.tags
                and not _pid_alive(int(run.data.tags[PID])))
            or is_stale(run.data.tags, now, max_age_s)]


STALE_NOTE = {NOTE: "process ended without closing the run; marked FAILED"}


def resume_cleanup(tags: Mapping[str, str]) -> list[str]:
    """The tags that :meth:`Tracker.reopen` deletes from a run it resumes.

    The note :data:`STALE_NOTE` (another note is kept) and the heartbeat of the previous
    process, which would make the resumed run look dead until its first heartbeat.
    """
    drop = [HEARTBEAT] if HEARTBEAT in tags else []
    if tags.get(NOTE) == STALE_NOTE[NOTE]:
        drop.append(NOTE)
    return drop


def reap_stale_runs(tracker: Tracker) -> int:
    """Mark the tracker's RUNNING runs taken for dead as FAILED.

    This is what every implementation's ``reap_stale`` does: each run of
    :func:`stale_runs` (its process on this host is gone, or its heartbeat is older than
    :data:`HEARTBEAT_MAX_AGE_S`) gets a note tag saying why, then ends FAILED. Runs of
    other hosts without a heartbeat are left alone. Returns how many runs were marked.
    """
    stale = stale_runs(tracker.search("attributes.status = 'RUNNING'"))
    for run_id in stale:
        tracker.set_tags(run_id, STALE_NOTE)
        tracker.end(run_id, "FAILED")
    return len(stale)


def open_tracker(uri: str | None, experiment: str, create: bool = True) -> Tracker:
    """An MLflow tracker, with an actionable error when the store cannot be opened or written.

    A local SQLite store is prepared first, under the creation lock beside it (see
    :func:`dhcbench.benchmark.sqlite_store.prepare_sqlite_store`): created atomically when
    missing, rebuilt when an interrupted creation left it half-built and empty. Other
    failures become one-line UserErrors naming the store. With ``create`` False (commands
    that read an existing store and experiment) a sound store is opened as it is: no lock,
    no lock file.
    """
    if not create:
        from dhcbench.benchmark.mlflow_tracker import MlflowTracker

        prepare_store(uri, create=False)
        try:
            return MlflowTracker(uri, experiment)
        except Exception as exc:  # MLflow raises several types for unreadable stores
            raise UserError(f"cannot open the MLflow store {uri or '(default)'}:"
                            f" {first_line(exc)}") from exc
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

    db = sqlite_store_file(uri)
    for attempt in range(4):
        try:
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
            with sqlite_creation_lock(uri if db is None else f"sqlite:///{db}"):
                if db is not None:
                    prepare_sqlite_store(db)
                # inside the lock: MLflow adds its Default experiment to a new store
                return MlflowTracker(uri, experiment)
        except UserError:
            raise
        except Exception as exc:  # MLflow raises several types for unreachable stores
            if attempt == 3:
                raise UserError(f"cannot open the MLflow store {uri or '(default)'}:"
                                f" {first_line(exc)}") from exc
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")
