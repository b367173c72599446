"""What a results table is made of: cells, columns, rows and the method families.

A :class:`ResultTable` is built by :func:`dhcbench.reports.table.build_table` and rendered
by the functions of :mod:`dhcbench.reports.render`; nothing here computes or formats more
than a single cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Order of the method families down the table (unknown families go last).
FAMILY_ORDER = {"bound": 0, "general": 1, "imbalance": 2, "ours": 3, "ablation": 4}
#: Group titles shown above each family's first row.
FAMILY_TITLES = {"bound": "Bounds", "general": "General", "imbalance": "Imbalance",
                 "ours": "Ours", "ablation": "Ablation"}
#: Mark of an Avg. Dice cell significantly different from the baseline's.
SIGNIFICANT = "†"
#: Text of a cell without a value: no run logged it, or the paper does not print it.
MISSING = "–"
#: Text of a cell whose value is undefined (NaN under the rigorous contract: the class is
#: absent from ground truth and prediction, or, for ASD / HD95, one of them is empty).
UNDEFINED = "n/a"


@dataclass(frozen=True)
class Cell:
    """One table cell: mean ± std over ``n`` seeds, with its rank and annotations.

    A NaN mean (or ``n`` 0) is an empty cell: :data:`UNDEFINED` ('n/a') when ``undefined``
    (the runs exist but the value is NaN), else :data:`MISSING` ('–', nothing was run or
    published). A NaN std (one seed, or not printed by the paper) is not shown. The values
    are in the column's unit (Dice in %, ASD and HD95 in voxels or mm by contract).
    """

    mean: float
    std: float = math.nan
    n: int = 1
    rank: int = 0  # 1 best, 2 second, 0 neither
    signed: bool = False  # a difference: rendered with its sign, no std
    mark: str = ""
    row_n: int = 0  # the row's seed count; a different n is shown in the cell
    undefined: bool = False  # empty because the value is NaN, not because nothing ran

    @property
    def empty(self) -> bool:
        """Whether the cell has no value (no seeds, or a NaN mean)."""
        return self.n == 0 or math.isnan(self.mean)

    def text(self, decimals: int, std: bool = True) -> str:
        """The cell as plain text, without emphasis.

        ``mean±std`` with ``decimals`` digits (``std`` False: the mean alone; a signed
        difference shows ``+x.xx`` alone), then `` (n=k)`` when the cell's seed count
        differs from its row's, then the mark; 'n/a' or '–' for an empty cell.
        """
        if self.empty:
            return UNDEFINED if self.undefined else MISSING
        if self.signed:
            body = f"{self.mean:+.{decimals}f}"
        elif math.isnan(self.std) or not std:
            body = f"{self.mean:.{decimals}f}"
        else:
            body = f"{self.mean:.{decimals}f}±{self.std:.{decimals}f}"
        if self.row_n and self.n != self.row_n:
            body += f" (n={self.n})"
        return body + self.mark


@dataclass(frozen=True)
class Column:
    """A value column: which metric it reads, its header, direction and precision.

    ``key`` names the per-seed record field, e.g. ``dice_mean``, ``asd_mean``,
    ``dice/liver`` (prefixed ``rigorous/`` under that contract) or ``tail``; ``average``
    marks a column that averages over classes (the compact terminal table shows ± there
    only).
    """

    key: str  # e.g. "dice_mean", "asd_mean", "dice/liver", "tail"
    header: str
    higher_is_better: bool
    decimals: int
    average: bool = False


@dataclass
class Row:
    """One table row: a method's cells in column order.

    ``kind`` is ``ours`` (aggregated from our seed runs; ``n`` is their number), ``paper``
    (the published row), ``delta`` (ours minus paper) or ``failed`` (a failed seed run,
    no values); the last three carry ``n`` 0.
    """

    label: str
    family: str
    n: int
    cells: list[Cell]
    kind: str = "ours"  # ours | paper | delta


@dataclass
class ResultTable:
    """A render-ready table for one (dataset, ratio, contract, checkpoint).

    ``notes`` are printed under the table (or as the terminal table's caption).
    """

    title: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
