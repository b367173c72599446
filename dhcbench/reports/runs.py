"""Loading a finished run back from MLflow: its spec, dataset and best checkpoint.

Used by ``dhcbench plot`` and ``dhcbench predict``. The spec comes from the run's
``spec.yaml`` artifact, the checkpoint from the run's checkpoint folder when it still exists
on this machine, else from its ``checkpoint/best.pt`` artifact.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dhcbench.benchmark import checkpoint
from dhcbench.benchmark.building import build_method
from dhcbench.benchmark.spec import RunSpec, build_spec
from dhcbench.benchmark.tracking import CHECKPOINT_DIR, ROLE, Tracker
from dhcbench.datasets import DATASETS, DatasetSpec, data_root
from dhcbench.datasets.storage import PreparedDataset
from dhcbench.errors import UserError
from dhcbench.methods.base import Method


@dataclass
class LoadedRun:
    """A finished seed run read back from MLflow.

    Its id, the run spec it was trained with (from its ``spec.yaml`` artifact), its tags
    and params as strings, and its display name.
    """

    run_id: str
    spec: RunSpec
    tags: dict[str, str]
    params: dict[str, str]
    name: str


def get_run(tracker: Tracker, run_id: str) -> Any:
    """The tracker's record of ``--run run_id``; an unknown id is a UserError."""
    try:
        return tracker.get(run_id)
    except Exception as exc:  # MLflow raises its own exception types
        raise UserError(f"--run {run_id}: no such MLflow run ({type(exc).__name__})") from exc


def load_run(tracker: Tracker, run_id: str) -> LoadedRun:
    """A seed run's spec and metadata.

    Unknown ids, parent runs (the error lists their seed runs) and runs not made by
    dhcbench are UserErrors.
    """
    run = get_run(tracker, run_id)
    tags = dict(run.data.tags)
    if tags.get(ROLE) == "parent":
        children = [r.info.run_id for r in tracker.children(run_id)]
        raise UserError(f"--run {run_id} is a parent run; give one of its seed runs:"
                        f" {', '.join(children) or 'none'}")
    if tags.get(ROLE) != "seed":
        raise UserError(f"--run {run_id}: not a dhcbench seed run")
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.download_artifact(run_id, "spec.yaml", Path(tmp))
        data: dict[str, Any] = yaml.safe_load(Path(path).read_text())
    return LoadedRun(run_id, build_spec([data]), tags, dict(run.data.params),
                     run.info.run_name or run_id)


def dataset_spec(loaded: LoadedRun) -> DatasetSpec:
    """The run's dataset spec, from the run spec's data section (no data is read)."""
    data = loaded.spec.data
    return DATASETS.get(data.name).spec(data.options, data.patch_size, data_root(data.root))


def dataset_of(loaded: LoadedRun) -> tuple[DatasetSpec, PreparedDataset]:
    """The run's dataset spec and prepared data.

    Built from the run spec's data section; the dataset must still be prepared on this
    machine, under the data root the spec names (or the default one).
    """
    data = loaded.spec.data
    dspec = dataset_spec(loaded)
    return dspec, DATASETS.get(data.name).open(dspec, data.options, data_root(data.root))


def best_method(tracker: Tracker, loaded: LoadedRun, dspec: DatasetSpec) -> Method:
    """The run's method with its best-on-eval weights, in eval mode, on the CPU.

    The checkpoint is read from the run's checkpoint folder when it is still on this
    machine, else downloaded from the run's ``checkpoint/best.pt`` artifact; having
    neither is a UserError.
    """
    method = build_method(loaded.spec, dspec)
    local = Path(loaded.tags.get(CHECKPOINT_DIR, "")) / checkpoint.BEST
    if loaded.tags.get(CHECKPOINT_DIR) and local.is_file():
        state = checkpoint.load(local)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = tracker.download_artifact(loaded.run_id, "checkpoint/best.pt", Path(tmp))
            except UserError as exc:
                raise UserError(f"--run {loaded.run_id}: no best checkpoint here or in its"
                                " artifacts") from exc
            state = checkpoint.load(Path(path))
    method.load_state_dict(state["method"])
    method.eval()
    return method
