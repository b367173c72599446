"""``dhcbench plot weights|classes|slices|curves``: figures of finished runs (PNG and PDF)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from dhcbench.benchmark.tracking import Tracker
from dhcbench.datasets.loaders import load_case
from dhcbench.errors import UserError
from dhcbench.evaluation.inference import predict_case
from dhcbench.reports.figures import (
    dice_vs_proportion,
    slice_comparison,
    training_curves,
    weight_trajectories,
)
from dhcbench.reports.runs import LoadedRun, best_method, dataset_of, load_run

KINDS = ("weights", "classes", "slices", "curves")


def check_kind(kind: str) -> None:
    """A UserError unless ``kind`` is one of :data:`KINDS`."""
    if kind not in KINDS:
        raise UserError(f"unknown figure {kind!r} (valid: {', '.join(KINDS)})")


def proportions(loaded: LoadedRun, class_names: Sequence[str]) -> dict[str, float]:
    """Voxel share of every class in the run's labeled set, in [0, 1] and summing to 1.

    Read from the run's ``split.labeled_voxels`` param (one count per class, background
    first); a run that did not record it is a UserError.
    """
    raw = loaded.params.get("split.labeled_voxels", "")
    if not raw:
        raise UserError(f"run {loaded.run_id} did not record split.labeled_voxels")
    counts = np.array([int(v) for v in raw.split(",")], dtype=float)
    share = counts / counts.sum()
    return {c: float(v) for c, v in zip(class_names, share, strict=True)}


def class_names_of(loaded: LoadedRun) -> tuple[str, ...]:
    """The class names a run recorded in its ``classes`` tag, background first.

    A run without the tag gives ``("",)``.
    """
    return tuple(loaded.tags.get("classes", "").split(","))


def mean_over_seeds(per_run: Mapping[str, Mapping[str, float]]
                    ) -> dict[str, dict[str, float]]:
    """Per-class values of seed runs, averaged over the seeds of one configuration.

    ``per_run`` maps run names (``…-seedN``) to per-class values; the runs of the same
    method, dataset and ratio become one entry labelled ``name (mean of n seeds)``, a lone
    run keeps its name. A class missing from some seed runs is averaged over the runs that
    have it.
    """
    groups: dict[str, list[tuple[str, Mapping[str, float]]]] = {}
    for name, values in per_run.items():
        groups.setdefault(re.sub(r"-seed\d+$", "", name), []).append((name, values))
    out: dict[str, dict[str, float]] = {}
    for stem, members in groups.items():
        label = members[0][0] if len(members) == 1 else f"{stem} (mean of {len(members)} seeds)"
        keys = dict.fromkeys(k for _, m in members for k in m)
        out[label] = {k: sum(m[k] for _, m in members if k in m)
                      / sum(k in m for _, m in members) for k in keys}
    return out


def _save(fig: object, out: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return paths


def predictions_for_case(tracker: Tracker, runs: Sequence[LoadedRun], case_id: str | None
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], str,
                                    tuple[str, ...]]:
    """Image, label and each run's prediction of one test case (default: the first).

    The case comes from the first run's prepared dataset and test split. Returns the image
    ``(D, H, W)`` or ``(C, D, H, W)`` float32, the ground truth ``(D, H, W)`` and, per run
    name, its predicted label map ``(D, H, W)`` uint8 (CPU inference), then the case id and
    the class names.
    """
    dspec, ds = dataset_of(runs[0])
    test_ids = sorted(ds.splits.get("test", [])) or sorted(ds.cases)
    split_ids = runs[0].params.get("split.test_ids", "")
    if split_ids:
        test_ids = split_ids.split(",")
    case_id = case_id or test_ids[0]
    if case_id not in ds.cases:
        raise UserError(f"--case {case_id}: not in the run's dataset ({ds.path})")
    case = load_case(ds, dspec, case_id)
    preds = {}
    for loaded in runs:
        method = best_method(tracker, loaded, dspec)
        preds[loaded.name] = predict_case(method.predict, case.image, dspec, loaded.spec.eval,
                                          torch.device("cpu"))
    return case.image, case.label, preds, case_id, dspec.class_names


def plot(tracker: Tracker, kind: str, run_ids: Sequence[str], out: Path,
         case_id: str | None = None, n_slices: int = 3) -> list[Path]:
    """Render one figure kind for the given seed runs; returns the written files.

    ``weights`` and ``curves`` draw one figure per run, ``classes`` one for all runs
    (seeds of a configuration averaged), ``slices`` one for all runs on ``case_id`` with
    ``n_slices`` slices. Each figure is saved as PNG and PDF in ``out``.
    """
    check_kind(kind)
    if not run_ids:
        raise UserError("give at least one --run")
    runs = [load_run(tracker, r) for r in run_ids]
    written: list[Path] = []
    if kind in ("weights", "curves"):
        for loaded in runs:
            if kind == "weights":
                series = tracker.weight_history(loaded.run_id)
                if not series:
                    raise UserError(f"run {loaded.run_id} logged no class weights")
                fig = weight_trajectories(series, class_names_of(loaded),
                                          f"{loaded.name}: class weights")
            else:
                history = {**tracker.history(loaded.run_id, "train/"),
                           **tracker.history(loaded.run_id, "eval/dice_mean"),
                           **tracker.history(loaded.run_id, "eval/best_dice_mean")}
                fig = training_curves(history, loaded.name)
            written += _save(fig, out, f"{kind}_{loaded.name}")
        return written
    if kind == "classes":
        names = class_names_of(runs[0])
        per_run = {}
        for loaded in runs:
            metrics = tracker.get(loaded.run_id).data.metrics
            per_run[loaded.name] = {k[len("test/dice/"):]: v for k, v in metrics.items()
                                    if k.startswith("test/dice/")}
        fig = dice_vs_proportion(mean_over_seeds(per_run), proportions(runs[0], names), names,
                                 "per-class Dice against class frequency")
        return _save(fig, out, "classes_" + "_".join(r.name for r in runs)[:120])
    image, label, preds, case, names = predictions_for_case(tracker, runs, case_id)
    fig = slice_comparison(image, label, preds, names, n_slices, f"case {case}")
    return _save(fig, out, f"slices_{case}")
