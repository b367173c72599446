"""What a run records for the people who browse it in MLflow, besides its metrics.

The system tags MLflow's own clients set (source, commit, user), a one-line description, the
dataset as a run input with its digest, the fully resolved spec (every default that a
``None`` stands for filled in, and the device actually used) and the trained model. The
experiment's kind tag is the tracker's (:mod:`dhcbench.benchmark.mlflow_tracker`).
"""

from __future__ import annotations

import getpass
import hashlib
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dhcbench import __version__
from dhcbench.benchmark.planning import (
    RunPlan,
    git_sha,
    split_manifest_name,
    training_cases,
    training_ids,
)
from dhcbench.benchmark.spec import RunSpec
from dhcbench.benchmark.tracking import Tracker
from dhcbench.datasets import DATASETS
from dhcbench.datasets.base import data_root
from dhcbench.datasets.loaders import epoch_iterations
from dhcbench.evaluation.inference import default_stride, resolve_device
from dhcbench.evaluation.scoring import aggregate_seeds
from dhcbench.evaluation.segmenter import Segmenter
from dhcbench.methods import METHODS
from dhcbench.methods.base import Method

#: MLflow's run description (shown as the run's "Description").
DESCRIPTION = "mlflow.note.content"


def system_tags() -> dict[str, str]:
    """MLflow's system tags for a run started from the command line.

    ``mlflow.source.name`` (the command), ``mlflow.source.type`` (LOCAL), ``mlflow.user`` and,
    inside a git checkout, ``mlflow.source.git.commit``: what MLflow's UI shows as Source,
    Created by and the commit.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        user = "unknown"
    command = " ".join(["dhcbench", *sys.argv[1:]]) if sys.argv else "dhcbench"
    tags = {"mlflow.source.name": command[:500], "mlflow.source.type": "LOCAL",
            "mlflow.user": user}
    sha = git_sha()
    if sha != "unknown":
        tags["mlflow.source.git.commit"] = sha
    return tags


def describe(spec: RunSpec, plan: RunPlan, seed: int | None = None) -> str:
    """One line on what the run is: method, dataset, ratio, seed(s), variant and schedule."""
    info = METHODS.get(spec.method.name)
    cases = training_cases(plan, info.data_mode)
    seeds = (f"seed {seed}" if seed is not None
             else "seeds " + ", ".join(str(s.seed) for s in plan.specs))
    return (f"{info.title} on {spec.data.name}, {spec.data.ratio:.0%} labeled ({cases}),"
            f" {seeds}; {spec.method.variant} variant, {spec.train.epochs + 1} epochs,"
            f" tested on {len(plan.split.test)} cases")


def dataset_digest(plan: RunPlan) -> str:
    """SHA-256 (hex) of the dataset as a run uses it: every case's array hashes and the split.

    Two runs with the same digest saw the same voxels, labels and case lists.
    """
    h = hashlib.sha256()
    for case_id in sorted(plan.dataset.cases):
        rec = plan.dataset.cases[case_id]
        h.update(f"{case_id}:{rec.image_sha256}:{rec.label_sha256}\n".encode())
    h.update(plan.split.sha256().encode())
    return h.hexdigest()


def dataset_input(plan: RunPlan) -> dict[str, str]:
    """The fields of the run's dataset input: name, digest, source and a profile summary."""
    ds = plan.dataset
    return {
        "name": f"{plan.dataset_spec.name}-{plan.specs[0].data.ratio:g}",
        "digest": dataset_digest(plan)[:16],
        "source": str(ds.path.absolute()),
        "source_type": "local",
        "profile": (f"{len(ds.cases)} cases ({len(plan.split.labeled)} labeled,"
                    f" {len(plan.split.unlabeled)} unlabeled, {len(plan.split.eval)} eval,"
                    f" {len(plan.split.test)} test); {ds.num_classes} classes; split"
                    f" {plan.split.source} sha256 {plan.split.sha256()[:12]}"),
    }


def resolved_spec(spec: RunSpec, plan: RunPlan, uri: str | None = None) -> dict[str, Any]:
    """The spec with every default a ``None`` or ``auto`` stands for made explicit.

    Patch size and split from the dataset, the evaluation stride, the method's keyword
    arguments with their defaults, iterations per epoch, ramp-up length, threads, the
    device actually used and whether AMP applies on it (CUDA only), the data folder and
    the tracking URI. ``patience`` None stays None: it means "never stop early". The result
    builds the same run (:func:`dhcbench.benchmark.spec.build_spec` accepts it).
    """
    d = spec.to_dict()
    info = METHODS.get(spec.method.name)
    device = resolve_device(spec.train.device)
    patch = tuple(plan.dataset_spec.patch_size)
    labeled, unlabeled = training_ids(plan, info.data_mode)
    t = spec.train
    iters = epoch_iterations(info.data_mode, len(labeled), len(unlabeled), t.batch_labeled,
                             t.batch_unlabeled)
    d["method"]["kwargs"] = {**info.defaults, **spec.method.kwargs}
    d["data"]["patch_size"] = list(patch)
    d["data"]["split"] = split_manifest_name(spec, DATASETS.get(spec.data.name)) or "folder"
    d["data"]["root"] = str(data_root(spec.data.root).absolute())
    d["train"].update(
        iters_per_epoch=t.iters_per_epoch or iters,
        rampup_epochs=t.rampup_epochs or t.epochs,
        threads=t.threads or torch.get_num_threads(),
        device=str(device),
        amp=bool(t.amp and device.type == "cuda"),
    )
    d["eval"]["stride"] = list(spec.eval.stride or default_stride(patch))  # type: ignore[arg-type]
    if uri is not None:
        d["tracking"]["uri"] = uri
    return d


def log_trained_model(tracker: Tracker, run_id: str, method: Method, spec: RunSpec,
                      plan: RunPlan, best_path: Path) -> None:
    """The tested checkpoint as the run's MLflow model, and as a raw ``checkpoint/best.pt``.

    ``method`` holds the weights that were tested (the best-on-eval checkpoint when there
    is one). The model is a :class:`~dhcbench.evaluation.segmenter.Segmenter` with the
    run's classes and sliding-window settings, loadable with ``mlflow.pytorch.load_model``.
    Nothing is logged when ``tracking.log_checkpoint`` is false.
    """
    if not spec.tracking.log_checkpoint:
        return
    if best_path.is_file():
        tracker.log_artifact(run_id, best_path, "checkpoint")
    model = Segmenter(method, plan.dataset_spec, spec.eval.stride, spec.eval.window_batch)
    tracker.log_model(run_id, model, [f"torch=={torch.__version__.split('+')[0]}",
                                      f"dhcbench=={__version__}"])


def seed_table(class_names: tuple[str, ...], seeds: list[tuple[int, str, dict[str, float]]],
               ) -> pd.DataFrame:
    """One row per seed (seed, run id, mean and per-class test Dice in %) and a mean±std row.

    ``seeds`` are (seed, seed-run id, test metrics) triples; ``class_names`` start with the
    background, which has no column.
    """
    rows = []
    for seed, run_id, metrics in seeds:
        row: dict[str, object] = {"seed": str(seed), "run_id": run_id,
                                  "dice_mean": metrics.get("test/dice_mean", float("nan"))}
        row |= {c: metrics.get(f"test/dice/{c}", float("nan")) for c in class_names[1:]}
        rows.append(row)
    table = pd.DataFrame(rows)
    numeric = table.drop(columns=["seed", "run_id"])
    mean = {"seed": "mean", "run_id": ""} | numeric.mean().to_dict()
    std = {"seed": "std", "run_id": ""} | numeric.std(ddof=0).to_dict()
    return pd.concat([table, pd.DataFrame([mean, std])], ignore_index=True)


def log_parent_summary(tracker: Tracker, parent_id: str, plan: RunPlan,
                       seeds: list[tuple[int, str, dict[str, float]]]) -> None:
    """The parent run's metrics (mean and std over seeds of every test metric) and seed table.

    The table goes in as ``seeds.csv`` and ``seeds.md`` (test Dice in %, best checkpoint,
    ``dhc`` contract).
    """
    tracker.log_metrics(parent_id, aggregate_seeds([m for _, _, m in seeds]))
    table = seed_table(plan.dataset_spec.class_names, seeds)
    tracker.log_text(parent_id, table.to_csv(index=False, float_format="%.4f"), "seeds.csv")
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    body = "".join("| " + " | ".join(v if isinstance(v, str) else f"{v:.2f}" for v in row)
                   + " |\n" for row in table.itertuples(index=False))
    title = (f"Test Dice (%) per seed, best-on-eval checkpoint, dhc contract:"
             f" {plan.specs[0].method.name} on {plan.dataset_spec.name},"
             f" {plan.specs[0].data.ratio:.0%} labeled\n\n")
    tracker.log_text(parent_id, title + header + body, "seeds.md")
