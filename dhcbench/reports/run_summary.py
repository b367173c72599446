"""What ``dhcbench run`` prints when it ends: each seed's result and what to do next.

Read back from the tracker, so the summary shows what was logged: per seed run its id, the
mean test Dice over the foreground classes and the mean over the tail classes (the ``k``
classes with the fewest labeled voxels), both in %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.table import Table

from dhcbench.benchmark.tracking import Tracker
from dhcbench.reports.table import recorded_tail


@dataclass(frozen=True)
class SeedLine:
    """One seed run's line: seed, run id, test Dice and tail-class Dice (%, NaN if untested)."""

    seed: str
    run_id: str
    dice: float
    tail_dice: float


def seed_lines(tracker: Tracker, parent_id: str, tail_k: int = 4
               ) -> tuple[list[SeedLine], list[str]]:
    """The seed runs of a parent run, sorted by seed, and the tail classes used."""
    lines, tail = [], []
    for run in tracker.children(parent_id):
        tags, metrics = run.data.tags, run.data.metrics
        classes = tags.get("classes", "").split(",")
        voxels = run.data.params.get("split.labeled_voxels", "")
        if len(classes) > 1:
            tail = recorded_tail(classes, voxels, tail_k) or tail
        tail_values = [metrics.get(f"test/dice/{name}", math.nan) for name in tail]
        lines.append(SeedLine(
            seed=tags.get("seed", "?"), run_id=run.info.run_id,
            dice=metrics.get("test/dice_mean", math.nan),
            tail_dice=sum(tail_values) / len(tail_values) if tail_values else math.nan))
    lines.sort(key=lambda line: int(line.seed) if line.seed.isdigit() else -1)
    return lines, tail


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def summary_table(lines: list[SeedLine], tail: list[str]) -> Table:
    """A small rich table of :func:`seed_lines` (a caption names the tail classes)."""
    table = Table(title="test results (best checkpoint)", title_justify="left",
                  caption=f"Tail-{len(tail)}: {', '.join(tail)}" if tail else None,
                  caption_justify="left")
    table.add_column("seed", justify="right")
    table.add_column("seed run id", no_wrap=True)
    table.add_column("Dice %", justify="right")
    table.add_column(f"Tail-{len(tail)} Dice %" if tail else "Tail Dice %", justify="right")
    for line in lines:
        table.add_row(line.seed, line.run_id, _pct(line.dice), _pct(line.tail_dice))
    return table


def next_commands(lines: list[SeedLine], experiment: str, dataset: str, ratio: float
                  ) -> list[str]:
    """The commands a user runs next: the table, the figures of these runs, the MLflow UI."""
    runs = " ".join(f"--run {line.run_id}" for line in lines)
    return [
        f"dhcbench table --experiment {experiment} --dataset {dataset} --ratio {ratio:g}",
        f"dhcbench plot curves {runs}",
        "mlflow ui    # in this folder (or --backend-store-uri $MLFLOW_TRACKING_URI)",
    ]
