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
from dhcbench.benchmark.spec import RunSpec, build_spec
from dhcbench.benchmark.tracking import CHECKPOINT_DIR, ROLE, Tracker
from dhcbench.datasets import DATASETS, DatasetSpec, data_root
from dhcbench.datasets.storage import PreparedDataset
from dhcbench.errors import UserError
from dhcbench.methods import METHODS
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


def load_run(tracker: Tracker, run_id: str) -> LoadedRun:
    """A seed run's spec and metadata.

    Unknown ids, parent runs (the error lists their seed runs) and runs not made by
    dhcbench are UserErrors.
    """
    try:
        run = tracker.get(run_id)
    except Exception as exc:  # MLflow raises its own exception types
        raise UserError(f"--run {run_id}: no such MLflow run ({type(exc).__name__})") from exc
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


def dataset_of(loaded: LoadedRun) -> tuple[DatasetSpec, PreparedDataset]:
    """The run's dataset spec and prepared data.

    Built from the run spec's data section; the dataset must still be prepared on this
    machine, under the data root the spec names (or the default one).
    """
    spec = loaded.spec
    source = DATASETS.get(spec.data.name)
    root = data_root(spec.data.root)
    dspec = source.spec(spec.data.options, spec.data.patch_size, root)
    return dspec, source.open(dspec, spec.data.options, root)


def best_method(tracker: Tracker, loaded: LoadedRun, dspec: DatasetSpec) -> Method:
    """The run's method with its best-on-eval weights, in eval mode, on the CPU.

    The checkpoint is read from the run's checkpoint folder when it is still on this
    machine, else downloaded from the run's ``checkpoint/best.pt`` artifact; having
    neither is a UserError.
    """
    spec = loaded.spec
    method = METHODS.get(spec.method.name).build(
        num_classes=dspec.num_classes, in_channels=dspec.channels,
        base_filters=spec.train.base_filters, variant=spec.method.variant,
        kwargs=spec.method.kwargs)
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
