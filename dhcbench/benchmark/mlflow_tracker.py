"""The MLflow implementation of :class:`dhcbench.benchmark.tracking.Tracker`.

A local SQLite store is created and repaired by :mod:`dhcbench.benchmark.sqlite_store`
before this class opens it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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

#: Experiment tag MLflow 3 reads to choose between its GenAI and model-training pages.
EXPERIMENT_KIND = "mlflow.experimentKind"
#: Its value for classic model training (what every dhcbench experiment is).
MODEL_TRAINING = "custom_model_development"


class MlflowTracker:
    """The :class:`Tracker` of an MLflow store: a thin wrapper over ``MlflowClient``."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        self._beating: set[str] = set()  # runs whose owner tags a heartbeat has checked
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            self.experiment_id = self.client.create_experiment(
                experiment, tags={EXPERIMENT_KIND: MODEL_TRAINING})
            self._kind_known = True
        else:
            self.experiment_id = exp.experiment_id
            self._kind_known = EXPERIMENT_KIND in exp.tags

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, name: str, tags: Mapping[str, Any], parent_id: str | None = None) -> str:
        """Create a RUNNING run named ``name``; returns its id.

        Tags are stored as strings, with the owner tags of this process added; with
        ``parent_id`` the run is nested under that run (``mlflow.parentRunId``).
        """
        all_tags = {k: str(v) for k, v in tags.items()} | owner_tags()
        if not self._kind_known:  # an experiment made by MLflow or an older dhcbench
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
            self._kind_known = True
        if parent_id is not None:
            all_tags[PARENT] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        """Mark an ended run RUNNING again, owned by this process (``--resume``).

        The stale-run note and the previous process's heartbeat are deleted
        (:func:`dhcbench.benchmark.tracking.resume_cleanup`).
        """
        # the old heartbeat goes first: RUNNING with it, the run would look dead at once
        for key in resume_cleanup(self.client.get_run(run_id).data.tags):
            self.client.delete_tag(run_id, key)
        self.client.update_run(run_id, status="RUNNING")
        self.set_tags(run_id, owner_tags())
        self._beating.discard(run_id)

    def heartbeat(self, run_id: str) -> None:
        """Stamp the run with the current UTC time (``dhcbench.heartbeat``).

        The first heartbeat of a run in this tracker also adds the owner tags it lacks
        (read from the store once); later ones write the one tag.
        """
        existing: Mapping[str, str] = {k: "" for k in owner_tags()}
        if run_id not in self._beating:
            existing = self.client.get_run(run_id).data.tags
        self.set_tags(run_id, heartbeat_tags(existing))
        self._beating.add(run_id)

    def end(self, run_id: str, status: str) -> None:
        """``FINISHED``, ``FAILED`` or ``KILLED``."""
        self.client.set_terminated(run_id, status=status)

    def get(self, run_id: str) -> Any:
        """MLflow's record of the run (``run.info``, ``run.data`` with the latest metrics).

        An unknown id raises MLflow's own error.
        """
        return self.client.get_run(run_id)

    # -- logging -------------------------------------------------------------------------------
    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log the values at ``step``, timestamped now (milliseconds since the epoch).

        Sent in batches of at most 1000 metrics (MLflow's limit per request), one request
        to the store each.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i:i + 1000], synchronous=True)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log parameters as strings cut to 6000 characters (MLflow's limit per value).

        Sent in batches of at most 100 (MLflow's limit of parameters per request).
        """
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100], synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags as strings in one batch; an existing tag is overwritten.

        The write is synchronous: the tags are in the store when the call returns.
        """
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(run_id, tags=items, synchronous=True)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """Copy the file ``path`` into the run's artifact store.

        It lands under the folder ``artifact_path`` (None: the artifact root), keeping its
        name.
        """
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Store ``text`` as the artifact ``artifact_file``.

        ``artifact_file`` is a path relative to the artifact root (``metrics/x.csv``).
        """
        self.client.log_text(run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure (PNG) and close it."""
        import matplotlib.pyplot as plt

        self.client.log_figure(run_id, figure, artifact_file)
        plt.close(figure)

    def log_dataset(self, run_id: str, fields: Mapping[str, str], context: str) -> None:
        """Record the run's dataset as an MLflow run input (``context``: training, …).

        ``fields``: ``name``, ``digest``, ``source``, ``source_type`` and ``profile`` (see
        :func:`dhcbench.benchmark.run_records.dataset_input`).
        """
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=fields["name"], digest=fields["digest"],
                          source_type=fields["source_type"],
                          source=json.dumps({"uri": fields["source"]}),
                          profile=json.dumps({"summary": fields["profile"]}))
        self.client.log_inputs(run_id, datasets=[DatasetInput(
            dataset, tags=[InputTag("mlflow.data.context", context)])])

    def log_model(self, run_id: str, model: Any, requirements: list[str]) -> None:
        """Log a :class:`~dhcbench.evaluation.segmenter.Segmenter` as the run's ``model``.

        Loadable with ``mlflow.pytorch.load_model("runs:/<run_id>/model")``.
        """
        from dhcbench.evaluation.segmenter import log_segmenter

        # Made here, in this experiment: MLflow would put it in the process's active one.
        logged = self.client.create_logged_model(
            self.experiment_id, name="model", source_run_id=run_id, model_type="segmentation",
            params=dict(self.client.get_run(run_id).data.params))
        log_segmenter(self.uri, run_id, model, requirements, logged.model_id)

    def weight_history(self, run_id: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """``{branch: {class: [(epoch, weight), …]}}`` from ``train/weight_<branch>/<class>``."""
        return weight_series(self.history(run_id, "train/weight_"))

    def download_artifact(self, run_id: str, artifact: str, dest: Path) -> Path:
        """The artifact copied into ``dest``; any failure is a UserError naming it."""
        try:
            return Path(self.client.download_artifacts(run_id, artifact, str(dest)))
        except Exception as exc:  # MLflow raises various types for missing artifacts
            raise UserError(f"run {run_id}: no artifact {artifact} ({exc})") from exc

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
        """The runs nested under ``parent_id`` (the seed runs of a parent run), newest first.

        They are found by their ``mlflow.parentRunId`` tag, within this experiment.
        """
        return self.search(f"tags.`{PARENT}` = '{parent_id}'")

    def reap_stale(self) -> int:
        """Mark RUNNING runs whose owning process on this host is gone as FAILED."""
        return reap_stale_runs(self)
