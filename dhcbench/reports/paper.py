"""The DHC paper's published numbers, for side-by-side tables.

They come from the package data ``paper-results.csv``.

Rows are looked up by (dataset, labeled percent, method key). The per-class Dice values of
37 rows were lost when the tables were extracted (``per_class_complete=false``): those rows
offer their averages only — nothing is imputed. :func:`published_row` fills them from another
table of the paper that prints the same method at the same ratio with the same averages
(Table 3's "Org-Org (CPS)" is Table 1's CPS: 33.55 / 41.21). The V-Net (fully) rows repeat
the same values in every table of a dataset (trained on all cases, not at that ratio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pandas as pd

from dhcbench.datasets.classes import ABBREVIATIONS

#: Our method keys that the paper's rows use under another key.
PAPER_KEYS = {"fully": "vnet_fully"}
PAPER_PREFERENCE = ("main-table-1", "main-table-2", "supp-table-1", "supp-table-2",
                    "supp-table-3", "supp-table-4", "main-table-3")


@dataclass(frozen=True)
class PaperRow:
    """One published row: averages (with std where printed) and per-class Dice by class name.

    Dice values are in %, ASD as the paper prints it (the dhc contract's voxel units); a
    std the paper does not print is NaN. ``source`` names the paper's table the row comes from,
    ``dice_source`` the table of its per-class values (empty when there are none).
    """

    source: str
    method: str
    avg_dice: float
    avg_dice_std: float
    avg_asd: float
    avg_asd_std: float
    dice: dict[str, float]  # class name -> Dice (%); empty when the row is incomplete
    dice_source: str = ""


@lru_cache(maxsize=1)
def paper_results() -> pd.DataFrame:
    """The transcribed tables as a DataFrame (numbers as floats; empty cells NaN).

    One row per (table, dataset, labeled percent, method); read once and cached.
    """
    path = resources.files("dhcbench.data").joinpath("paper-results.csv")
    with path.open() as fh:
        return pd.read_csv(fh)


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _rows(dataset: str, ratio: float, method: str) -> pd.DataFrame:
    """Every published row of ``method`` on ``dataset`` at ``ratio``, preferred table first."""
    df = paper_results()
    key = PAPER_KEYS.get(method, method)
    percent = round(ratio * 100, 6)
    rows = df[(df.dataset == dataset) & (df.method_key == key)
              & ((df.labeled_percent - percent).abs() < 1e-6)]
    order = {s: i for i, s in enumerate(PAPER_PREFERENCE)}
    return rows.iloc[rows.source.map(lambda s: order.get(s, 99)).argsort()]


def _dice(row: pd.Series) -> dict[str, float]:
    """The per-class Dice of a complete row by class name (empty for an incomplete one)."""
    abbrev_to_name = {v: k for k, v in ABBREVIATIONS.items()}
    dice: dict[str, float] = {}
    if str(row.per_class_complete).lower() == "true":
        for col in ("Sp", "RK", "LK", "Ga", "Es", "Li", "St", "Ao", "IVC", "PSV", "Pa", "RAG",
                    "LAG", "Du", "Bl", "PU"):
            value = _num(row[col])
            if not math.isnan(value):
                dice[abbrev_to_name["P/U" if col == "PU" else col]] = value
    return dice


def _paper_row(row: pd.Series, dice: dict[str, float], dice_source: str) -> PaperRow:
    return PaperRow(str(row.source), str(row.method), _num(row.avg_dice),
                    _num(row.avg_dice_std), _num(row.avg_asd), _num(row.avg_asd_std), dice,
                    dice_source if dice else "")


def paper_row(dataset: str, ratio: float, method: str) -> PaperRow | None:
    """The published row for ``method`` on ``dataset`` at ``ratio`` (a fraction), if any.

    ``method`` is our method key (mapped through :data:`PAPER_KEYS`); when several of the
    paper's tables have the row, the first in :data:`PAPER_PREFERENCE` wins. Per-class
    values are filled only for rows whose extraction is complete.
    """
    rows = _rows(dataset, ratio, method)
    if rows.empty:
        return None
    row = rows.iloc[0]
    return _paper_row(row, _dice(row), str(row.source))


def published_row(dataset: str, ratio: float, method: str) -> PaperRow | None:
    """:func:`paper_row`, its per-class values taken from any table of the paper.

    When the preferred row lost its per-class values, another row of the same method,
    dataset and ratio with all of them and the same printed averages (Dice and ASD) gives
    them; ``dice_source`` names its table. The averages and stds stay the preferred row's.
    """
    rows = _rows(dataset, ratio, method)
    if rows.empty:
        return None
    first = rows.iloc[0]
    for _, row in rows.iterrows():
        dice = _dice(row)
        same = (_num(row.avg_dice) == _num(first.avg_dice)
                and _num(row.avg_asd) == _num(first.avg_asd))
        if dice and same:
            return _paper_row(first, dice, str(row.source))
    return _paper_row(first, {}, "")
