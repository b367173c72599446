"""The figures every seed run logs to MLflow, as a hook of the runner.

The hooks are a :data:`dhcbench.benchmark.runner.SeedHook` (:func:`log_run_figures`) and a
:data:`~dhcbench.benchmark.runner.ParentHook` (:func:`log_parent_figures`): the command line
passes them to the runs, sweeps and studies it starts.
"""

from __future__ import annotations

from dhcbench.benchmark.planning import run_name
from dhcbench.benchmark.runner import SeedReport
from dhcbench.benchmark.tracking import Tracker
from dhcbench.reports.cli_plot import class_dice, mean_over_seeds, voxel_shares
from dhcbench.reports.figures import (
    class_dice_bars,
    constant_branches,
    training_curves,
    weight_trajectories,
)
from dhcbench.reports.figures_compare import dice_vs_proportion, slice_comparison
from dhcbench.reports.plot_labels import branch_titles


def log_run_figures(seed: SeedReport) -> None:
    """Log a finished seed's figures as PNG artifacts of its run under ``figures/``.

    Class-weight trajectories (when the method logged weights that changed during training:
    CPS's uniform weights get none), training curves, per-class test Dice (bars, and
    against class frequency) and slices of the first test case.
    """
    tracker, run_id, spec, plan = seed.tracker, seed.run_id, seed.spec, seed.plan
    metrics = seed.metrics
    dspec = plan.dataset_spec
    name = run_name(spec, spec.seed)
    series = tracker.weight_history(run_id)
    if series and len(constant_branches(series)) < len(series):
        fig = weight_trajectories(series, dspec.class_names, f"{name}: class weights",
                                  branch_titles(spec, dspec.num_classes))
        tracker.log_figure(run_id, fig, "figures/weights.png")
    history: dict[str, list[tuple[int, float]]] = {}
    for prefix in ("train/loss", "train/lambda", "train/lr", "eval/"):
        history.update(tracker.history(run_id, prefix))
    fig = training_curves(history, name, dspec.class_names)
    tracker.log_figure(run_id, fig, "figures/curves.png")
    dice = class_dice(metrics)
    if dice:
        fig = class_dice_bars(dice, dspec.class_names, f"{name}: test Dice (best checkpoint)")
        tracker.log_figure(run_id, fig, "figures/test_dice.png")
        counts = plan.dataset.class_counts(plan.split.labeled).astype(float)
        share = dict(zip(dspec.class_names, counts / counts.sum(), strict=True))
        fig = dice_vs_proportion({name: dice}, share, dspec.class_names,
                                 f"{name}: Dice against class frequency")
        tracker.log_figure(run_id, fig, "figures/classes.png")
    case, pred = seed.example
    fig = slice_comparison(case.image, case.label, {name: pred},
                           dspec.class_names, 3, f"{name}: test case {case.case_id}")
    tracker.log_figure(run_id, fig, "figures/slices.png")


def log_parent_figures(tracker: Tracker, parent_id: str, seed_ids: list[str]) -> None:
    """Log the figures of a parent run's seeds together under the parent's ``figures/``.

    Per-class test Dice against class frequency, one marker per seed
    (``figures/classes.png``), and the per-class mean over the seeds as bars
    (``figures/test_dice.png``). A parent without tested seeds gets none.
    """
    runs = [tracker.get(run_id) for run_id in seed_ids]
    dice = {f"seed {r.data.tags.get('seed', '?')}": class_dice(r.data.metrics) for r in runs}
    if not runs or not all(dice.values()):
        return
    class_names = tuple(runs[0].data.tags.get("classes", "").split(","))
    name = runs[0].info.run_name.rsplit("-seed", 1)[0]
    share = voxel_shares(runs[0].data.params, class_names, runs[0].info.run_id)
    fig = dice_vs_proportion(dice, share, class_names,
                             f"{name}: test Dice against class frequency, per seed")
    tracker.log_figure(parent_id, fig, "figures/classes.png")
    (mean,) = mean_over_seeds({r.info.run_name: class_dice(r.data.metrics) for r in runs}
                              ).values()
    fig = class_dice_bars(mean, class_names,
                          f"{name}: test Dice, mean of {len(runs)} seed(s) (best checkpoint)")
    tracker.log_figure(parent_id, fig, "figures/test_dice.png")
