"""MLflow behind one small interface.

One parent run per ``dhcbench run`` invocation and one child run per seed (linked with
MLflow's ``mlflow.parentRunId`` tag, so ``mlflow ui`` nests them). Metrics are sent in
batches (``log_batch``: one SQLite transaction instead of one per value). Every run records
the host and process that own it; :meth:`Tracker.reap_stale` marks runs whose process died
without ending them as FAILED, so nothing stays RUNNING forever.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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


class Tracker:
    """Thin wrapper over ``MlflowClient`` for one experiment."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            exp.experiment_id if exp is not None else self.client.create_experiment(experiment)
        )

    # -- runs ----------------------------------------------------------------------------------
    def _owner_tags(self) -> dict[str, str]:
        return {PID: str(os.getpid()), HOST: socket.gethostname()}

    def start_run(self, name: str, tags: Mapping[str, Any], parent_id: str | None = None) -> str:
        all_tags = {k: str(v) for k, v in tags.items()} | self._owner_tags()
        if parent_id is not None:
            all_tags[PARENT] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        """Mark an ended run RUNNING again, owned by this process (``--resume``)."""
        self.client.update_run(run_id, status="RUNNING")
        self.set_tags(run_id, self._owner_tags())

    def end(self, run_id: str, status: str) -> None:
        """``FINISHED``, ``FAILED`` or ``KILLED``."""
        self.client.set_terminated(run_id, status=status)

    def get(self, run_id: str) -> Any:
        return self.client.get_run(run_id)

    # -- logging -------------------------------------------------------------------------------
    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i:i + 1000], synchronous=True)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100], synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(run_id, tags=items, synchronous=True)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure (PNG) and close it."""
        import matplotlib.pyplot as plt

        self.client.log_figure(run_id, figure, artifact_file)
        plt.close(figure)

    def weight_history(self, run_id: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """``{branch: {class: [(epoch, weight), …]}}`` from ``train/weight_<branch>/<class>``."""
        series: dict[str, dict[str, list[tuple[int, float]]]] = {}
        for key, points in self.history(run_id, "train/weight_").items():
            branch, cls = key[len("train/weight_"):].split("/", 1)
            series.setdefault(branch, {})[cls] = points
        return series

    def history(self, run_id: str, prefix: str) -> dict[str, list[tuple[int, float]]]:
        """``{metric: [(step, value), …]}`` for every metric of the run under ``prefix``."""
        keys = [k for k in self.client.get_run(run_id).data.metrics if k.startswith(prefix)]
        return {k: [(m.step, m.value) for m in self.client.get_metric_history(run_id, k)]
                for k in keys}

    # -- queries -------------------------------------------------------------------------------
    def search(self, filter_string: str = "", max_results: int = 50000) -> list[Any]:
        """Runs of this experiment matching an MLflow filter string, newest first."""
        return list(self.client.search_runs(
            [self.experiment_id], filter_string=filter_string, max_results=max_results,
            order_by=["attributes.start_time DESC"],
        ))

    def children(self, parent_id: str) -> list[Any]:
        return self.search(f"tags.`{PARENT}` = '{parent_id}'")

    def reap_stale(self) -> int:
        """Mark RUNNING runs whose owning process on this host is gone as FAILED."""
        host = socket.gethostname()
        reaped = 0
        for run in self.search("attributes.status = 'RUNNING'"):
            tags = run.data.tags
            if tags.get(HOST) != host or PID not in tags:
                continue
            if not _pid_alive(int(tags[PID])):
                self.set_tags(run.info.run_id, {"dhcbench.note": "process ended without "
                                                "closing the run; marked FAILED"})
                self.end(run.info.run_id, "FAILED")
                reaped += 1
        return reaped


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
    """Hold an exclusive lock on ``<db>.lock`` while an SQLite store is opened (POSIX only;
    elsewhere, and for server stores, a no-op)."""
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
    """A Tracker, with an actionable error when the store cannot be opened or written."""
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
    for attempt in range(4):
        try:
            with sqlite_creation_lock(uri):
                return Tracker(uri, experiment)
        except UserError:
            raise
        except Exception as exc:  # MLflow raises several types for unreachable stores
            if attempt == 3:
                raise UserError(
                    f"cannot open the MLflow store {uri or '(default)'}: {exc}") from exc
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")
