"""An in-memory :class:`dhcbench.benchmark.tracking.Tracker`, with no database and no files.

Tests run the engine against it when they are about the engine, not about MLflow.

It keeps the same records MLflow returns (``run.info``, ``run.data``) and understands the
same filter clauses dhcbench uses (``tags.`<name>` = '<value>'``, ``attributes.status =
'<STATUS>'``, joined by ``and``); anything else in a filter is a ValueError, so a query
this tracker cannot answer fails loudly instead of matching everything.
"""

from __future__ import annotations

import io
import itertools
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dhcbench.benchmark.tracking import (
    PARENT,
    heartbeat_tags,
    owner_tags,
    reap_stale_runs,
    resume_cleanup,
    weight_series,
)
from dhcbench.errors import UserError

_CLAUSE = re.compile(r"^(tags\.`?([^`]+?)`?|attributes\.status)\s*=\s*'([^']*)'$")
_ORDER = itertools.count()


@dataclass
class RunInfo:
    """MLflow's ``run.info``, the fields dhcbench reads."""

    run_id: str
    run_name: str
    status: str = "RUNNING"
    start_time: int = 0
    end_time: int | None = None
    order: int = 0


@dataclass
class RunData:
    """MLflow's ``run.data``: tags and params as strings, metrics at their latest value."""

    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class MemoryRun:
    """One run: its record and what was logged to it."""

    info: RunInfo
    data: RunData
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    inputs: list[dict[str, str]] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)


class MemoryTracker:
    """A :class:`Tracker` that keeps every run in a dict (one experiment)."""

    def __init__(self, experiment: str = "memory") -> None:
        self.experiment = experiment
        self.runs: dict[str, MemoryRun] = {}

    def _run(self, run_id: str) -> MemoryRun:
        if run_id not in self.runs:
            raise UserError(f"no such run {run_id!r}")
        return self.runs[run_id]

    # -- writing ----------------------------------------------------------------------------
    def start_run(self, name: str, tags: Mapping[str, Any], parent_id: str | None = None
                  ) -> str:
        """A new RUNNING run; returns its id."""
        run_id = uuid.uuid4().hex
        all_tags = {k: str(v) for k, v in tags.items()} | owner_tags()
        if parent_id is not None:
            all_tags[PARENT] = parent_id
        info = RunInfo(run_id, name, start_time=int(time.time() * 1000), order=next(_ORDER))
        self.runs[run_id] = MemoryRun(info, RunData(tags=all_tags))
        return run_id

    def reopen(self, run_id: str) -> None:
        """RUNNING again, owned by this process, without the stale note or old heartbeat."""
        run = self._run(run_id)
        for key in resume_cleanup(run.data.tags):
            del run.data.tags[key]
        run.info.status, run.info.end_time = "RUNNING", None
        run.data.tags.update(owner_tags())

    def heartbeat(self, run_id: str) -> None:
        """The current UTC time as ``dhcbench.heartbeat``, plus any missing owner tags."""
        run = self._run(run_id)
        run.data.tags.update(heartbeat_tags(run.data.tags))

    def end(self, run_id: str, status: str) -> None:
        """``FINISHED``, ``FAILED`` or ``KILLED``."""
        if status not in ("FINISHED", "FAILED", "KILLED"):
            raise ValueError(f"status {status!r}")
        run = self._run(run_id)
        run.info.status, run.info.end_time = status, int(time.time() * 1000)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Append every value to its history; the record keeps the latest."""
        run = self._run(run_id)
        for key, value in metrics.items():
            run.history.setdefault(key, []).append((int(step), float(value)))
            run.data.metrics[key] = float(value)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Parameters as strings."""
        self._run(run_id).data.params.update({k: str(v) for k, v in params.items()})

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Tags as strings."""
        self._run(run_id).data.tags.update({k: str(v) for k, v in tags.items()})

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None
                     ) -> None:
        """The file's bytes under ``artifact_path/<name>``."""
        name = f"{artifact_path}/{Path(path).name}" if artifact_path else Path(path).name
        self._run(run_id).artifacts[name] = Path(path).read_bytes()

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """``text`` (UTF-8) as ``artifact_file``."""
        self._run(run_id).artifacts[artifact_file] = text.encode()

    def log_dataset(self, run_id: str, fields: Mapping[str, str], context: str) -> None:
        """Keep the dataset input's fields, with its context, in ``run.inputs``."""
        self._run(run_id).inputs.append({**fields, "context": context})

    def log_model(self, run_id: str, model: Any, requirements: list[str]) -> None:
        """Keep the model object itself as the run's ``model`` (no serialisation)."""
        del requirements
        self._run(run_id).models["model"] = model

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """The figure as PNG bytes; the figure is closed."""
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        self._run(run_id).artifacts[artifact_file] = buffer.getvalue()

    def download_artifact(self, run_id: str, artifact: str, dest: Path) -> Path:
        """The artifact written into ``dest``."""
        run = self._run(run_id)
        if artifact not in run.artifacts:
            raise UserError(f"run {run_id}: no artifact {artifact}")
        path = Path(dest) / Path(artifact).name
        path.write_bytes(run.artifacts[artifact])
        return path

    # -- reading ----------------------------------------------------------------------------
    def get(self, run_id: str) -> MemoryRun:
        """The run record."""
        return self._run(run_id)

    def search(self, filter_string: str = "", max_results: int = 50000) -> list[MemoryRun]:
        """Runs matching every clause of the filter, newest first."""
        clauses = [c.strip() for c in re.split(r"\s+and\s+", filter_string.strip(),
                                               flags=re.IGNORECASE) if c.strip()]
        tests = []
        for clause in clauses:
            match = _CLAUSE.match(clause)
            if match is None:
                raise ValueError(f"MemoryTracker cannot answer the filter clause {clause!r}")
            tests.append((match.group(2), match.group(3)))

        def keep(run: MemoryRun) -> bool:
            return all(run.info.status == value if tag is None
                       else run.data.tags.get(tag) == value for tag, value in tests)

        found = sorted((r for r in self.runs.values() if keep(r)),
                       key=lambda r: r.info.order, reverse=True)
        return found[:max_results]

    def children(self, parent_id: str) -> list[MemoryRun]:
        """Child runs of ``parent_id``, newest first."""
        return self.search(f"tags.`{PARENT}` = '{parent_id}'")

    def history(self, run_id: str, prefix: str) -> dict[str, list[tuple[int, float]]]:
        """Every metric's (step, value) history under ``prefix``."""
        return {k: list(v) for k, v in self._run(run_id).history.items()
                if k.startswith(prefix)}

    def weight_history(self, run_id: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """Class-weight histories by branch and class."""
        return weight_series(self.history(run_id, "train/weight_"))

    def reap_stale(self) -> int:
        """RUNNING runs of dead processes of this host -> FAILED."""
        return reap_stale_runs(self)
