"""The paper-style results table: building it from per-seed records.

Rows are methods; columns Avg. Dice, Avg. ASD, an optional tail-class column, then
per-class Dice (or ASD).

Each cell is the mean ± population std over seeds (``np.std``, ddof 0, as the reference's
evaluate_Ntimes.py and the paper) of per-seed values that are themselves means over test
cases (per class) and over classes (averages). Among our rows, the best value of every
column is bold and the second underlined (higher Dice, lower ASD is better). Optional extras:
the published row and the difference beside each method (``--with-paper``), a significance
mark from the paired tests against a baseline, the number of seeds behind a cell when it
differs from its row's. Rendered for the terminal (rich), Markdown, LaTeX (booktabs), HTML
and CSV.

This module is the table's entry point: the table's parts (:mod:`~dhcbench.reports.cells`),
the per-seed records (:mod:`~dhcbench.reports.records`) and the renderers
(:mod:`~dhcbench.reports.render`) are importable from here too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from dhcbench.datasets.classes import abbreviation
from dhcbench.reports.cells import FAMILY_ORDER, SIGNIFICANT, Cell, Column, ResultTable, Row
from dhcbench.reports.records import seed_records
from dhcbench.reports.render import to_csv, to_html, to_latex, to_markdown, to_rich

# The table's parts, the records and the renderers stay importable from this module.
__all__ = ["FAMILY_ORDER", "SIGNIFICANT", "Cell", "Column", "ResultTable", "Row", "build_table",
           "seed_records", "tail_classes", "to_csv", "to_html", "to_latex", "to_markdown",
           "to_rich"]


def tail_classes(class_names: Sequence[str], labeled_voxels: Sequence[int], k: int
                 ) -> list[str]:
    """The ``k`` foreground classes with the fewest labeled voxels, rarest first.

    ``labeled_voxels`` holds one voxel count per class of ``class_names`` (background
    first, never chosen), as a run records it in ``split.labeled_voxels``; ties keep the
    class order.
    """
    fg = [(int(n), i) for i, n in enumerate(labeled_voxels) if i > 0]
    return [class_names[i] for _, i in sorted(fg)[:k]]


def recorded_tail(class_names: Sequence[str], labeled_voxels: str, k: int) -> list[str]:
    """:func:`tail_classes` from the counts as a run records them (``"n0,n1,…"``).

    None (an empty list) when no counts were recorded or ``k`` is 0.
    """
    if not labeled_voxels or k <= 0:
        return []
    return tail_classes(class_names, [int(x) for x in labeled_voxels.split(",")], k)


def _cell(values: np.ndarray) -> Cell:
    if len(values) == 0:
        return Cell(math.nan, math.nan, 0)
    return Cell(float(np.mean(values)), float(np.std(values)), len(values))


def build_table(
    records: pd.DataFrame,
    class_names: Sequence[str],
    title: str,
    contract: str = "dhc",
    metric: str = "dice",
    tail: Sequence[str] = (),
    paper: Mapping[str, object] | None = None,
    marks: Mapping[str, str] | None = None,
) -> ResultTable:
    """Aggregate per-seed records into cells and rank each column.

    ``records`` are :func:`~dhcbench.reports.records.seed_records` rows (one per seed run);
    a row per (method, family) comes out, families in :data:`FAMILY_ORDER`, then by label.
    ``metric`` picks the per-class columns (``dice`` or ``asd``); the averages come first,
    then the tail column (mean Dice of the ``tail`` classes) when ``tail`` is given. Under
    ``rigorous`` the metric keys carry that prefix. ``paper`` maps a method label to its
    :class:`~dhcbench.reports.paper.PaperRow` (a published row and a difference row follow
    ours); ``marks`` maps a method label to a mark for its Avg. Dice cell.
    """
    pre = "" if contract == "dhc" else f"{contract}/"
    columns = [Column(f"{pre}dice_mean", "Avg. Dice", True, 2),
               Column(f"{pre}asd_mean", "Avg. ASD", False, 2)]
    if tail:
        columns.append(Column("tail", f"Tail-{len(tail)} Dice", True, 2))
    columns += [Column(f"{pre}{metric}/{c}", abbreviation(c), metric == "dice", 1)
                for c in class_names if c != "background"]
    records = records.copy()
    if tail:
        tail_keys = [f"{pre}dice/{c}" for c in tail]
        present = [k for k in tail_keys if k in records]
        records["tail"] = (records[present].mean(axis=1, skipna=False)
                           if len(present) == len(tail_keys) else math.nan)
    table = ResultTable(title, columns)
    groups = sorted(records.groupby(["method", "family"]),
                    key=lambda g: (FAMILY_ORDER.get(g[0][1], 9), g[0][0]))
    for (label, family), group in groups:
        n = len(group)
        cells = [replace(_cell(group[c.key].dropna().to_numpy(float) if c.key in group
                               else np.array([])), row_n=n) for c in columns]
        if marks and label in marks and not cells[0].empty:
            cells[0] = replace(cells[0], mark=marks[label])
        table.rows.append(Row(str(label), str(family), n, cells))
    _rank(table)
    if paper:
        _add_paper_rows(table, paper, tail, metric)
    return table


def _paper_cells(columns: Sequence[Column], published: object, tail: Sequence[str],
                 metric: str) -> list[Cell]:
    cells = []
    for col in columns:
        if col.key.endswith("dice_mean"):
            cells.append(Cell(published.avg_dice, published.avg_dice_std))  # type: ignore
        elif col.key.endswith("asd_mean"):
            cells.append(Cell(published.avg_asd, published.avg_asd_std))  # type: ignore
        elif col.key == "tail":
            values = [published.dice.get(c, math.nan) for c in tail]  # type: ignore
            cells.append(Cell(float(np.mean(values)) if values else math.nan))
        elif metric == "dice":
            cells.append(Cell(published.dice.get(col.key.rsplit("/", 1)[1], math.nan)))  # type: ignore
        else:
            cells.append(Cell(math.nan))  # the paper prints no per-class ASD
    return cells


def _add_paper_rows(table: ResultTable, paper: Mapping[str, object], tail: Sequence[str],
                    metric: str) -> None:
    rows: list[Row] = []
    for row in table.rows:
        rows.append(row)
        published = paper.get(row.label)
        if published is None:
            continue
        pcells = _paper_cells(table.columns, published, tail, metric)
        rows.append(Row(f"{row.label} (paper)", row.family, 0, pcells, kind="paper"))
        diff = [Cell(o.mean - p.mean, signed=True) if not (o.empty or p.empty)
                else Cell(math.nan, n=0) for o, p in zip(row.cells, pcells, strict=True)]
        rows.append(Row(f"{row.label} Δ", row.family, 0, diff, kind="delta"))
    table.rows = rows
    table.notes.append("(paper): the published row (paper-results.csv; per-class values"
                       " missing from the extraction show '–'); Δ: ours minus paper.")


def _rank(table: ResultTable) -> None:
    """Bold the best, underline the second (by the displayed value; ties share a rank).

    A column where every row shows the same value gets no mark, and the second place is
    marked only when the column shows at least three distinct values (otherwise it would
    just mark every other row).
    """
    for j, col in enumerate(table.columns):
        shown = [(round(row.cells[j].mean, col.decimals), i) for i, row in enumerate(table.rows)
                 if not row.cells[j].empty]
        distinct = sorted({v for v, _ in shown}, reverse=col.higher_is_better)
        if len(distinct) < 2:
            continue
        last_rank = 2 if len(distinct) >= 3 else 1
        for value, i in shown:
            rank = distinct.index(value) + 1
            if rank <= last_rank:
                row = table.rows[i]
                row.cells[j] = replace(row.cells[j], rank=rank)
