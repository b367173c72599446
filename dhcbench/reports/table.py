"""The paper-style results table: building it from per-seed records.

Rows are methods; columns Avg. Dice, Avg. ASD (and Avg. HD95 for ``--metric hd95``), an
optional tail-class column, then the chosen metric per class (Dice, ASD or HD95).

Each cell is the mean ± population std over seeds (``np.std``, ddof 0, as the reference's
evaluate_Ntimes.py and the paper) of per-seed values that are themselves means over test
cases (per class) and over classes (averages); one seed has no std. Every row's averages
cover the same classes (:mod:`~dhcbench.reports.averages`). Among our rows, the best value of
every column is bold and the second underlined (higher Dice, lower ASD / HD95 is better).
An empty cell reads 'n/a' when its value is undefined (NaN under the rigorous contract) and
'–' when nothing was run or published. Optional extras: the published row and the
difference beside each method (``--with-paper``,
:mod:`~dhcbench.reports.published`), a significance mark from the paired tests against a
baseline, the number of seeds behind a cell when it differs from its row's. Rendered for
the terminal (:mod:`~dhcbench.reports.terminal`), Markdown, LaTeX (booktabs), HTML and CSV.

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
from dhcbench.reports.averages import AVERAGE_HEADERS, rigorous_averages
from dhcbench.reports.cells import (
    FAMILY_ORDER,
    MISSING,
    SIGNIFICANT,
    UNDEFINED,
    Cell,
    Column,
    ResultTable,
    Row,
)
from dhcbench.reports.paper import PaperRow
from dhcbench.reports.published import add_paper_rows
from dhcbench.reports.records import seed_records
from dhcbench.reports.render import to_csv, to_html, to_latex, to_markdown
from dhcbench.reports.terminal import to_rich

# The table's parts, the records and the renderers stay importable from this module.
__all__ = ["FAMILY_ORDER", "METRICS", "SIGNIFICANT", "Cell", "Column", "ResultTable", "Row",
           "build_table", "seed_records", "tail_classes", "to_csv", "to_html", "to_latex",
           "to_markdown", "to_rich"]

#: The per-class metrics a table can show.
METRICS = ("dice", "asd", "hd95")


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
    # One seed has no spread: a std of 0 would read as certainty.
    std = float(np.std(values)) if len(values) > 1 else math.nan
    return Cell(float(np.mean(values)), std, len(values))


def _columns(class_names: Sequence[str], pre: str, metric: str, tail: Sequence[str]
             ) -> list[Column]:
    averaged = ["dice", "asd"] + (["hd95"] if metric == "hd95" else [])
    columns = [Column(f"{pre}{m}_mean", AVERAGE_HEADERS[m], m == "dice", 2, True)
               for m in averaged]
    if tail:
        columns.append(Column("tail", f"Tail-{len(tail)} Dice", True, 2, True))
    return columns + [Column(f"{pre}{metric}/{c}", abbreviation(c), metric == "dice", 1)
                      for c in class_names if c != "background"]


def _scored(group: pd.DataFrame, pre: str) -> bool:
    """Whether any of a row's runs logged a value under the contract of prefix ``pre``."""
    keys = [k for k in group.columns if isinstance(k, str) and k.startswith(pre)
            and k != "tail"]
    return bool(keys) and bool(group[keys].notna().to_numpy().any())


def _legend(table: ResultTable) -> str:
    """The note that tells 'n/a' from '–' in our rows, and one seed from several."""
    ours = [r for r in table.rows if r.kind == "ours"]
    parts = []
    if any(c.undefined and c.empty for r in ours for c in r.cells):
        parts.append(f"{UNDEFINED}: undefined in every seed run (NaN: the class is absent"
                     " from ground truth and prediction, or for ASD / HD95 one of them is"
                     " empty), so it counts in no average")
    if any(c.empty and not c.undefined for r in ours for c in r.cells):
        parts.append(f"{MISSING}: no value (no run logged it)")
    if any(r.n == 1 for r in ours):
        parts.append("n = 1: a single seed run, so no ± is shown")
    return "; ".join(parts) + "." if parts else ""


def build_table(
    records: pd.DataFrame,
    class_names: Sequence[str],
    title: str,
    contract: str = "dhc",
    metric: str = "dice",
    tail: Sequence[str] = (),
    paper: Mapping[str, PaperRow] | None = None,
    marks: Mapping[str, str] | None = None,
) -> ResultTable:
    """Aggregate per-seed records into cells and rank each column.

    ``records`` are :func:`~dhcbench.reports.records.seed_records` rows (one per seed run);
    a row per (method, family) comes out, families in :data:`FAMILY_ORDER`, then by label.
    ``metric`` picks the per-class columns (one of :data:`METRICS`); the averages come
    first, then the tail column (mean Dice of the ``tail`` classes) when ``tail`` is given.
    Under ``rigorous`` the metric keys carry that prefix and the averages are recomputed
    over the classes defined in every run (a note says which). ``paper`` maps a method
    label to its :class:`~dhcbench.reports.paper.PaperRow` (a published row and a difference
    row follow ours); ``marks`` maps a method label to a mark for its Avg. Dice cell.
    """
    pre = "" if contract == "dhc" else f"{contract}/"
    columns = _columns(class_names, pre, metric, tail)
    shown = [c.key.rsplit("/", 1)[-1].removesuffix("_mean") for c in columns if c.average]
    records, average_classes, average_note = rigorous_averages(records, class_names, contract,
                                                               shown)
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
        undefined = contract != "dhc" and _scored(group, pre)
        cells = [replace(_cell(group[c.key].dropna().to_numpy(float) if c.key in group
                               else np.array([])), row_n=n, undefined=undefined)
                 for c in columns]
        if marks and label in marks and not cells[0].empty:
            cells[0] = replace(cells[0], mark=marks[label])
        table.rows.append(Row(str(label), str(family), n, cells))
    _rank(table)
    if paper:
        foreground = [c for c in class_names if c != "background"]
        add_paper_rows(table, paper, tail, metric, contract, average_classes.get("dice"),
                       len(foreground))
    table.notes += [note for note in (average_note, _legend(table)) if note]
    return table


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
