"""The published rows of a results table (``dhcbench table --with-paper``).

Under each method that the paper reports: the paper's row, then ours minus the paper's.

The paper prints Dice in % and ASD in voxels of the evaluation grid (the dhc contract),
per-class Dice only, and its averages over every class. Under the dhc contract these cells
compare directly. Under ``rigorous`` the paper's ASD is another quantity (voxels, directed,
128 for a missed organ) and is left out; its Avg. Dice is recomputed over the table's
common classes when those differ from all classes (and the per-class values allow it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from dhcbench.reports.cells import Cell, Column, ResultTable, Row
from dhcbench.reports.paper import PaperRow


def _average_dice(published: PaperRow, classes: Sequence[str] | None,
                  n_classes: int) -> Cell:
    """The paper's Avg. Dice over ``classes`` (None or every class: the printed one)."""
    if classes is None or len(classes) == n_classes:
        return Cell(published.avg_dice, published.avg_dice_std)
    values = [published.dice.get(c, math.nan) for c in classes]
    return Cell(float(np.mean(values)) if values else math.nan)


def _paper_cells(columns: Sequence[Column], published: PaperRow, tail: Sequence[str],
                 metric: str, contract: str, dice_classes: Sequence[str] | None,
                 n_classes: int) -> list[Cell]:
    cells = []
    comparable_asd = contract == "dhc"
    for col in columns:
        if col.key.endswith("dice_mean"):
            cells.append(_average_dice(published, dice_classes, n_classes))
        elif col.key.endswith("asd_mean") and comparable_asd:
            cells.append(Cell(published.avg_asd, published.avg_asd_std))
        elif col.key == "tail":
            values = [published.dice.get(c, math.nan) for c in tail]
            cells.append(Cell(float(np.mean(values)) if values else math.nan))
        elif metric == "dice" and not col.average:
            cells.append(Cell(published.dice.get(col.key.rsplit("/", 1)[1], math.nan)))
        else:
            cells.append(Cell(math.nan))  # no per-class ASD / HD95 in the paper
    return cells


def _notes(paper: Mapping[str, PaperRow], contract: str) -> list[str]:
    notes = ["(paper): the published row (paper-results.csv; per-class values"
             " missing from the extraction show '–'); Δ: ours minus paper."]
    borrowed = [f"{label} from {p.dice_source}" for label, p in paper.items()
                if p.dice_source and p.dice_source != p.source]
    if borrowed:
        notes.append("Per-class published values from another table of the paper whose"
                     f" averages are the same: {', '.join(borrowed)}.")
    if contract != "dhc":
        notes.append("The paper's ASD (voxels, dhc contract) is not comparable with the"
                     f" {contract} contract's and shows '–'.")
    return notes


def add_paper_rows(table: ResultTable, paper: Mapping[str, PaperRow], tail: Sequence[str],
                   metric: str, contract: str = "dhc",
                   dice_classes: Sequence[str] | None = None, n_classes: int = 0) -> None:
    """Insert the published row and the difference row under each method that has one.

    ``paper`` maps a method label to its :class:`~dhcbench.reports.paper.PaperRow`;
    ``dice_classes`` are the classes behind the table's Avg. Dice when they are not all
    ``n_classes`` foreground classes (rigorous contract). The notes say what the rows are.
    """
    rows: list[Row] = []
    for row in table.rows:
        rows.append(row)
        published = paper.get(row.label)
        if published is None:
            continue
        pcells = _paper_cells(table.columns, published, tail, metric, contract,
                              dice_classes, n_classes)
        rows.append(Row(f"{row.label} (paper)", row.family, 0, pcells, kind="paper"))
        diff = [Cell(o.mean - p.mean, signed=True) if not (o.empty or p.empty)
                else Cell(math.nan, n=0) for o, p in zip(row.cells, pcells, strict=True)]
        rows.append(Row(f"{row.label} Δ", row.family, 0, diff, kind="delta"))
    table.rows = rows
    table.notes += _notes(paper, contract)
