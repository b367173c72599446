"""The figures every seed run logs to MLflow, as a hook of the runner.

The hook is a :data:`dhcbench.benchmark.runner.SeedHook`: the command line passes
:func:`log_run_figures` to the runs, sweeps and studies it starts.
"""

from __future__ import annotations

from dhcbench.benchmark.planning import run_name
from dhcbench.benchmark.runner import SeedReport
from dhcbench.reports.figures import (
    class_dice_bars,
    dice_vs_proportion,
    slice_comparison,
    training_curves,
    weight_trajectories,
)


def log_run_figures(seed: SeedReport) -> None:
    """Log a finished seed's figures as PNG artifacts of its run under ``figures/``.

    Class-weight trajectories (when the method logged weights), training curves, per-class
    test Dice (bars, and against class frequency) and slices of the first test case.
    """
    tracker, run_id, spec, plan = seed.tracker, seed.run_id, seed.spec, seed.plan
    metrics = seed.metrics
    dspec = plan.dataset_spec
    name = run_name(spec, spec.seed)
    series = tracker.weight_history(run_id)
    if series:
        fig = weight_trajectories(series, dspec.class_names, f"{name}: class weights")
        tracker.log_figure(run_id, fig, "figures/weights.png")
    history = {**tracker.history(run_id, "train/"), **tracker.history(run_id, "eval/")}
    tracker.log_figure(run_id, training_curves(history, name), "figures/curves.png")
    dice = {k[len("test/dice/"):]: v for k, v in metrics.items() if k.startswith("test/dice/")}
    if dice:
        fig = class_dice_bars(dice, dspec.class_names, f"{name}: test Dice (best checkpoint)")
        tracker.log_figure(run_id, fig, "figures/test_dice.png")
        counts = plan.dataset.class_counts(plan.split.labeled).astype(float)
        share = dict(zip(dspec.class_names, counts / counts.sum(), strict=True))
        fig = dice_vs_proportion({name: dice}, share, dspec.class_names,
                                 f"{name}: Dice against class frequency")
        tracker.log_figure(run_id, fig, "figures/classes.png")
    case, pred = seed.example
    fig = slice_comparison(case.image, case.label, {spec.method.name: pred},
                           dspec.class_names, 3, f"{name}: test case {case.case_id}")
    tracker.log_figure(run_id, fig, "figures/slices.png")
