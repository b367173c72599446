"""Per-seed result records: one row per finished seed run, read from its tracking data.

The records are what :func:`dhcbench.reports.table.build_table` aggregates: the method's
label and family, dataset, ratio and seed, the labeled set's class voxel counts, and the
run's test metrics with their prefix stripped (``dice_mean``, ``dice/liver``,
``rigorous/asd_mean`` …).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def seed_records(runs: Sequence[object], prefix: str = "test") -> pd.DataFrame:
    """One row per finished seed run: method label, family, dataset, ratio, seed, metrics.

    ``runs`` are MLflow run objects (``data.tags``, ``data.params``, ``data.metrics``,
    ``info.run_id``), newest first; ``prefix`` selects the metrics (``test`` for the best
    checkpoint, ``test_last`` for the last). When several runs exist for the same (method,
    variant, dataset, ratio, seed) the newest counts. A variant other than ``reference`` is
    part of the label, e.g. ``dhc (paper)``.
    """
    records = []
    seen: set[tuple[str, ...]] = set()
    for run in runs:
        tags = run.data.tags  # type: ignore[attr-defined]
        dataset = tags.get("dataset_name") or tags.get("dataset", "?")
        key = (tags.get("method", "?"), tags.get("variant", "reference"),
               dataset, tags.get("ratio", "?"), tags.get("seed", "?"))
        if key in seen:
            continue
        seen.add(key)
        label = key[0] if key[1] == "reference" else f"{key[0]} ({key[1]})"
        rec = {"method": label, "method_key": key[0], "family": tags.get("family", "general"),
               "dataset": key[2], "ratio": float(key[3]), "seed": key[4],
               "registry": tags.get("dataset", key[2]), "classes": tags.get("classes", ""),
               "labeled_voxels": run.data.params.get("split.labeled_voxels", ""),  # type: ignore[attr-defined]
               "run_id": run.info.run_id}  # type: ignore[attr-defined]
        for metric, value in run.data.metrics.items():  # type: ignore[attr-defined]
            if metric.startswith(prefix + "/"):
                rec[metric[len(prefix) + 1:]] = value
        records.append(rec)
    return pd.DataFrame(records)


def select_records(records: pd.DataFrame, dataset: str | None, ratio: float | None
                   ) -> pd.DataFrame:
    """The records of one dataset and / or labeled ratio (None: any).

    ``dataset`` matches either the dataset's own name or its registry key (so ``nnunet``
    selects every nnU-Net dataset); ``ratio`` is a fraction compared to within 1e-9.
    """
    if dataset is not None and len(records):
        records = records[(records.dataset == dataset) | (records.registry == dataset)]
    if ratio is not None and len(records):
        records = records[(records.ratio - ratio).abs() < 1e-9]
    return records
