"""Scoring label maps: tidy per-case rows, their aggregation, and NIfTI files on disk.

Rows are ``case, class, contract, metric, value`` (one per case, foreground class, contract
and metric; Dice in %, ASD in voxels under ``dhc`` and in mm under ``rigorous``).
Aggregation follows the reference (§11): a class's value is the mean over cases, the average
is the mean over classes of those; under ``rigorous`` NaN (undefined) values are excluded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dhcbench.datasets.nifti import nifti_files, nifti_stem, read_volume
from dhcbench.errors import UserError
from dhcbench.evaluation.metrics import case_metrics

COLUMNS = ["case", "class", "contract", "metric", "value"]


def case_rows(
    case_id: str,
    pred: np.ndarray,
    gt: np.ndarray,
    class_names: Sequence[str],
    spacing: Sequence[float],
) -> list[dict[str, object]]:
    """Tidy rows of one case: every foreground class, both contracts, every metric.

    ``pred`` and ``gt`` are integer label maps ``(D, H, W)`` of the same shape with values
    below ``len(class_names)``; ``spacing`` is the voxel size in mm along (D, H, W). Each
    row is a dict with the keys of :data:`COLUMNS` (Dice in %, ASD in voxels under ``dhc``,
    ASD and HD95 in mm under ``rigorous``).
    """
    values = case_metrics(pred, gt, len(class_names), spacing)
    return [
        {"case": case_id, "class": class_names[c], "contract": contract, "metric": metric,
         "value": value}
        for (contract, metric, c), value in sorted(values.items(), key=lambda kv: kv[0][2])
    ]


def summarise(rows: pd.DataFrame, prefix: str = "test") -> dict[str, float]:
    """MLflow metric dict from tidy rows.

    ``dhc`` rows give ``{prefix}/dice/<class>``, ``{prefix}/asd/<class>``,
    ``{prefix}/dice_mean``, ``{prefix}/asd_mean``; ``rigorous`` rows the same under
    ``{prefix}/rigorous/…`` plus hd95. Classes whose values are all undefined are left out.
    """
    out: dict[str, float] = {}
    if rows.empty:
        return out
    grouped = rows.groupby(["contract", "metric", "class"], sort=False)["value"].mean()
    for (contract, metric), per_class in grouped.groupby(level=[0, 1], sort=False):
        base = prefix if contract == "dhc" else f"{prefix}/{contract}"
        values = per_class.droplevel([0, 1])
        for cls, v in values.items():
            if not math.isnan(v):
                out[f"{base}/{metric}/{cls}"] = float(v)
        finite = values.dropna()
        if len(finite):
            out[f"{base}/{metric}_mean"] = float(finite.mean())
    return out


# -- label maps on disk -------------------------------------------------------------------------


def _nifti_files(path: Path, role: str) -> dict[str, Path]:
    if path.is_file():
        return {nifti_stem(path): path}
    if path.is_dir():
        files = nifti_files(path)
        if not files:
            raise UserError(f"{path}: no .nii.gz or .nii files in the {role} folder")
        return {nifti_stem(p): p for p in files}
    raise UserError(f"{path}: {role} path does not exist")


def read_label_map(path: Path, num_classes: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """A 3D integer label map and its voxel spacing (mm) from a NIfTI file.

    Both are in (z, y, x) order, as :func:`dhcbench.datasets.nifti.read_volume` reads them:
    the map is ``(D, H, W)`` with values in ``0 .. num_classes - 1``.

    Raises UserError naming the file when it is unreadable, not 3D, not integer-valued or
    has values outside ``0 .. num_classes - 1``.
    """
    volume = read_volume(path, label=True, num_classes=num_classes)
    return volume.data, volume.spacing


def evaluate_files(pred: Path, gt: Path, class_names: Sequence[str]) -> pd.DataFrame:
    """Score prediction label maps against ground truth (files or folders matched by id).

    Spacing comes from the ground-truth header. Every prediction must have a ground truth of
    the same shape; ground truths without a prediction are an error too (a silently skipped
    case would inflate the averages).
    """
    preds = _nifti_files(Path(pred), "prediction")
    gts = _nifti_files(Path(gt), "ground-truth")
    if Path(pred).is_file() and Path(gt).is_file():
        gts = {next(iter(preds)): next(iter(gts.values()))}
    missing = sorted(set(preds) - set(gts))
    if missing:
        raise UserError(f"{preds[missing[0]]}: no ground truth with case id {missing[0]!r}")
    unpredicted = sorted(set(gts) - set(preds))
    if unpredicted:
        raise UserError(f"{gts[unpredicted[0]]}: no prediction for case id {unpredicted[0]!r}")
    rows: list[dict[str, object]] = []
    for case_id in sorted(preds):
        p, _ = read_label_map(preds[case_id], len(class_names))
        g, spacing = read_label_map(gts[case_id], len(class_names))
        if p.shape != g.shape:
            raise UserError(
                f"{preds[case_id]}: shape {p.shape} differs from the ground truth's {g.shape}"
            )
        rows.extend(case_rows(case_id, p, g, class_names, spacing))
    return pd.DataFrame(rows, columns=COLUMNS)


def frame(rows: Iterable[dict[str, object]]) -> pd.DataFrame:
    """Tidy rows as a DataFrame with the columns of :data:`COLUMNS`, in that order.

    An empty ``rows`` gives an empty frame that still has the columns.
    """
    return pd.DataFrame(list(rows), columns=COLUMNS)


def aggregate_seeds(results: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean and population std over seeds of every test metric (the parent run's metrics).

    ``results`` are the seeds' metric dicts; for every ``test/…`` and ``test_last/…`` key —
    the averages and each class's Dice (%), ASD and HD95 — the output has ``<key>`` (mean
    over the seeds that have it) and ``<key>_std`` (ddof 0), plus ``seeds_finished``, the
    number of seeds.
    """
    out: dict[str, float] = {}
    keys = sorted({k for r in results for k in r if k.startswith(("test/", "test_last/"))})
    for key in keys:
        values = [r[key] for r in results if key in r]
        out[key] = float(np.mean(values))
        out[f"{key}_std"] = float(np.std(values))
    out["seeds_finished"] = float(len(results))
    return out
