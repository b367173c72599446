"""``dhcbench plot weights|classes|slices|curves``: figures of finished runs (PNG and PDF).

File names name the runs (:mod:`dhcbench.reports.plot_labels`), so plotting other runs never
overwrites an earlier figure; runs whose class weights never changed get a note instead of
a flat weights figure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from dhcbench.benchmark.tracking import Tracker
from dhcbench.datasets.loaders import load_case
from dhcbench.errors import UserError
from dhcbench.evaluation.inference import predict_case
from dhcbench.reports.figures import (
    constant_branches,
    constant_note,
    training_curves,
    weight_trajectories,
)
from dhcbench.reports.figures_compare import dice_vs_proportion, slice_comparison
from dhcbench.reports.plot_labels import branch_titles, run_stem, runs_stem, short_id
from dhcbench.reports.runs import LoadedRun, best_method, dataset_of, load_run

KINDS = ("weights", "classes", "slices", "curves")


def check_kind(kind: str) -> None:
    """A UserError unless ``kind`` is one of :data:`KINDS`."""
    if kind not in KINDS:
        raise UserError(f"unknown figure {kind!r} (valid: {', '.join(KINDS)})")


def voxel_shares(params: Mapping[str, str], class_names: Sequence[str], run_id: str
                 ) -> dict[str, float]:
    """Voxel share of every class in a run's labeled set, in [0, 1] and summing to 1.

    Read from the run's ``split.labeled_voxels`` param (one count per class, background
    first); a run that did not record it is a UserError.
    """
    raw = params.get("split.labeled_voxels", "")
    if not raw:
        raise UserError(f"run {run_id} did not record split.labeled_voxels")
    counts = np.array([int(v) for v in raw.split(",")], dtype=float)
    share = counts / counts.sum()
    return {c: float(v) for c, v in zip(class_names, share, strict=True)}


def proportions(loaded: LoadedRun, class_names: Sequence[str]) -> dict[str, float]:
    """:func:`voxel_shares` of a loaded run."""
    return voxel_shares(loaded.params, class_names, loaded.run_id)


def class_dice(metrics: Mapping[str, float]) -> dict[str, float]:
    """``{class: test Dice}`` from a run's ``test/dice/<class>`` metrics (best checkpoint)."""
    return {k[len("test/dice/"):]: v for k, v in metrics.items() if k.startswith("test/dice/")}


def class_names_of(loaded: LoadedRun) -> tuple[str, ...]:
    """The class names a run recorded in its ``classes`` tag, background first.

    A run without the tag gives ``("",)``.
    """
    return tuple(loaded.tags.get("classes", "").split(","))


def display_names(runs: Sequence[LoadedRun]) -> list[str]:
    """The runs' names, each with its short id where two runs share a name."""
    count: dict[str, int] = {}
    for loaded in runs:
        count[loaded.name] = count.get(loaded.name, 0) + 1
    return [r.name if count[r.name] == 1 else f"{r.name} ({short_id(r.run_id)})" for r in runs]


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
    (:func:`display_names`), its predicted label map ``(D, H, W)`` uint8 (CPU inference),
    then the case id and the class names.
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
    for loaded, name in zip(runs, display_names(runs), strict=True):
        method = best_method(tracker, loaded, dspec)
        preds[name] = predict_case(method.predict, case.image, dspec, loaded.spec.eval,
                                   torch.device("cpu"))
    return case.image, case.label, preds, case_id, dspec.class_names


def _weights(tracker: Tracker, loaded: LoadedRun, out: Path, say: Callable[[str], None]
             ) -> list[Path]:
    """One run's class-weight figure, or a note (and no file) when the weights never moved."""
    series = tracker.weight_history(loaded.run_id)
    if not series:
        raise UserError(f"run {loaded.run_id} logged no class weights")
    names = class_names_of(loaded)
    if len(constant_branches(series)) == len(series):
        merged = {f"{b}/{c}": p for b, per_class in series.items() for c, p in per_class.items()}
        say(f"{loaded.name} ({short_id(loaded.run_id)}): class weights {constant_note(merged)}"
            " in every branch, never updated during training; no weights figure written")
        return []
    fig = weight_trajectories(series, names, f"{loaded.name}: class weights",
                              branch_titles(loaded.spec, len(names)))
    return _save(fig, out, run_stem("weights", loaded.name, loaded.run_id))


def _curves(tracker: Tracker, loaded: LoadedRun, out: Path) -> list[Path]:
    """One run's training curves: losses, λ, learning rate, mean and per-class eval Dice."""
    history: dict[str, list[tuple[int, float]]] = {}
    for prefix in ("train/loss", "train/lambda", "train/lr", "eval/"):
        history.update(tracker.history(loaded.run_id, prefix))
    fig = training_curves(history, loaded.name, class_names_of(loaded))
    return _save(fig, out, run_stem("curves", loaded.name, loaded.run_id))


def _classes(tracker: Tracker, runs: Sequence[LoadedRun], out: Path) -> list[Path]:
    """Per-class test Dice against class frequency, seeds of a configuration averaged."""
    names = class_names_of(runs[0])
    per_run = {}
    for loaded, name in zip(runs, display_names(runs), strict=True):
        per_run[name] = class_dice(tracker.get(loaded.run_id).data.metrics)
    fig = dice_vs_proportion(mean_over_seeds(per_run), proportions(runs[0], names), names,
                             "per-class Dice against class frequency")
    return _save(fig, out, runs_stem("classes", [r.spec.method.name for r in runs],
                                     [r.run_id for r in runs]))


def plot(tracker: Tracker, kind: str, run_ids: Sequence[str], out: Path,
         case_id: str | None = None, n_slices: int = 3,
         say: Callable[[str], None] | None = None) -> list[Path]:
    """Render one figure kind for the given seed runs; returns the written files.

    ``weights`` and ``curves`` draw one figure per run
    (``<kind>_<run name>_<short id>``), ``classes`` one for all runs (seeds of a
    configuration averaged; ``classes_<methods>_<short ids>``), ``slices`` one for all runs
    on ``case_id`` with ``n_slices`` slices (``slices_<case>_<methods>_<short ids>``; see
    :func:`~dhcbench.reports.plot_labels.runs_stem`). Each figure is saved as PNG and PDF in
    ``out``. A run whose class weights never changed (CPS: uniform) gets no weights figure:
    ``say`` is told why instead.
    """
    check_kind(kind)
    if not run_ids:
        raise UserError("give at least one --run")
    runs = [load_run(tracker, r) for r in run_ids]
    if kind == "weights":
        return [p for loaded in runs for p in _weights(tracker, loaded, out, say or _quiet)]
    if kind == "curves":
        return [p for loaded in runs for p in _curves(tracker, loaded, out)]
    if kind == "classes":
        return _classes(tracker, runs, out)
    image, label, preds, case, names = predictions_for_case(tracker, runs, case_id)
    fig = slice_comparison(image, label, preds, names, n_slices, f"test case {case}")
    return _save(fig, out, runs_stem("slices", [r.spec.method.name for r in runs],
                                     [r.run_id for r in runs], case))


def _quiet(message: str) -> None:
    """Drop a note (the default ``say`` of :func:`plot`)."""
