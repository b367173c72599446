"""The paper-style results table: rows = methods, columns Avg. Dice, Avg. ASD, per-class Dice.

Each cell is the mean ± population std over seeds (``np.std``, ddof 0, as the reference's
evaluate_Ntimes.py and the paper), of per-seed values that are themselves means over test
cases (per class) and over classes (averages). In every column the best value is bold and
the second underlined (higher Dice, lower ASD is better). Rendered for the terminal (rich),
Markdown, LaTeX (booktabs) and CSV.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dhcbench.datasets.classes import abbreviation

FAMILY_ORDER = {"bound": 0, "general": 1, "imbalance": 2, "ours": 3, "ablation": 4}
FAMILY_TITLES = {"bound": "Bounds", "general": "General", "imbalance": "Imbalance",
                 "ours": "Ours", "ablation": "Ablation"}


def _sections(table: ResultTable):  # noqa: ANN202
    """Rows with a group title before each family's first row (when several families)."""
    grouped = len({row[1] for row in table.rows}) > 1
    previous = None
    for row in table.rows:
        if grouped and row[1] != previous:
            yield FAMILY_TITLES.get(row[1], row[1].title()), None
            previous = row[1]
        yield None, row


@dataclass(frozen=True)
class Cell:
    """mean ± std over ``n`` seeds (NaN mean: no value, rendered '–')."""

    mean: float
    std: float
    n: int
    rank: int = 0  # 1 best, 2 second, 0 neither

    def text(self, decimals: int) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "–"
        return f"{self.mean:.{decimals}f}±{self.std:.{decimals}f}"


@dataclass(frozen=True)
class Column:
    key: str  # e.g. "dice_mean", "asd_mean", "dice/liver"
    header: str
    higher_is_better: bool
    decimals: int


@dataclass
class ResultTable:
    """A rendered-ready table for one (dataset, ratio, contract)."""

    title: str
    columns: list[Column]
    rows: list[tuple[str, str, int, list[Cell]]] = field(default_factory=list)
    # (label, family, seeds, cells)


def seed_records(runs: Sequence[object], prefix: str = "test") -> pd.DataFrame:
    """One row per finished seed run: method label, family, dataset, ratio, seed, metrics.

    When several runs exist for the same (method, variant, dataset, ratio, seed) the newest
    counts (runs come newest first).
    """
    records = []
    seen: set[tuple[str, ...]] = set()
    for run in runs:
        tags = run.data.tags  # type: ignore[attr-defined]
        dataset = tags.get("dataset_name") or tags.get("dataset", "?")
        key = (tags.get("method", "?"), tags.get("variant", "reference"),
               dataset, tags.get("ratio", "?"), tags.get("seed", "?"))
        if key in seen:
            continue
        seen.add(key)
        label = key[0] if key[1] == "reference" else f"{key[0]} ({key[1]})"
        rec = {"method": label, "family": tags.get("family", "general"),
               "dataset": key[2], "ratio": float(key[3]), "seed": key[4],
               "registry": tags.get("dataset", key[2]), "classes": tags.get("classes", "")}
        for metric, value in run.data.metrics.items():  # type: ignore[attr-defined]
            if metric.startswith(prefix + "/"):
                rec[metric[len(prefix) + 1:]] = value
        records.append(rec)
    return pd.DataFrame(records)


def build_table(
    records: pd.DataFrame,
    class_names: Sequence[str],
    title: str,
    contract: str = "dhc",
    metric: str = "dice",
) -> ResultTable:
    """Aggregate per-seed records into cells and rank each column.

    ``metric`` picks the per-class columns (``dice`` or ``asd``); the two averages always
    come first. Under ``rigorous`` the metric keys carry that prefix.
    """
    pre = "" if contract == "dhc" else f"{contract}/"
    columns = [
        Column(f"{pre}dice_mean", "Avg. Dice", True, 2),
        Column(f"{pre}asd_mean", "Avg. ASD", False, 2),
    ] + [
        Column(f"{pre}{metric}/{c}", abbreviation(c), metric == "dice", 1)
        for c in class_names if c != "background"
    ]
    table = ResultTable(title, columns)
    groups = sorted(
        records.groupby(["method", "family"]),
        key=lambda g: (FAMILY_ORDER.get(g[0][1], 9), g[0][0]),
    )
    for (label, family), group in groups:
        cells = []
        for col in columns:
            values = group[col.key].dropna().to_numpy(float) if col.key in group else []
            if len(values):
                cells.append(Cell(float(np.mean(values)), float(np.std(values)), len(values)))
            else:
                cells.append(Cell(math.nan, math.nan, 0))
        table.rows.append((str(label), str(family), len(group), cells))
    _rank(table)
    return table


def _rank(table: ResultTable) -> None:
    """Bold the best, underline the second (by the displayed value; ties share a rank).

    A column where every row shows the same value gets no mark, and the second place is
    marked only when at least three rows compete (with two it would just mark the other).
    """
    for j, col in enumerate(table.columns):
        shown = []
        for i, row in enumerate(table.rows):
            cell = row[3][j]
            if cell.n and not math.isnan(cell.mean):
                shown.append((round(cell.mean, col.decimals), i))
        distinct = sorted({v for v, _ in shown}, reverse=col.higher_is_better)
        if len(distinct) < 2:
            continue
        last_rank = 2 if len(shown) >= 3 else 1
        for value, i in shown:
            rank = distinct.index(value) + 1
            if rank <= last_rank:
                cells = table.rows[i][3]
                cells[j] = Cell(cells[j].mean, cells[j].std, cells[j].n, rank)


# -- renderers ----------------------------------------------------------------------------------


def to_markdown(table: ResultTable) -> str:
    """GitHub Markdown: best ``**bold**``, second ``<u>underlined</u>``."""
    head = ["Method", "n"] + [c.header for c in table.columns]
    lines = [f"**{table.title}**", "", "| " + " | ".join(head) + " |",
             "|" + "|".join([":---", "--:"] + ["--:"] * len(table.columns)) + "|"]
    for title, row in _sections(table):
        if row is None:
            lines.append(f"| *{title}* |" + " |" * (len(table.columns) + 1))
            continue
        label, _family, n, cells = row
        texts = []
        for col, cell in zip(table.columns, cells, strict=True):
            t = cell.text(col.decimals)
            texts.append(f"**{t}**" if cell.rank == 1 else f"<u>{t}</u>" if cell.rank == 2 else t)
        lines.append("| " + " | ".join([label, str(n), *texts]) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                 ("#", r"\#")):
        text = text.replace(a, b)
    return text


def to_latex(table: ResultTable) -> str:
    """A booktabs ``table`` environment; best ``\\textbf``, second ``\\underline``."""
    ncols = 2 + len(table.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(table.title)}}}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{l" + "c" * (ncols - 1) + "}",
        r"\toprule",
        " & ".join(["Method", "$n$"] + [_latex_escape(c.header) for c in table.columns])
        + r" \\",
        r"\midrule",
    ]
    for title, row in _sections(table):
        if row is None:
            lines.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{title}}}}} \\")
            continue
        label, _family, n, cells = row
        texts = []
        for col, cell in zip(table.columns, cells, strict=True):
            t = cell.text(col.decimals).replace("±", r"$\pm$").replace("–", "--")
            texts.append(rf"\textbf{{{t}}}" if cell.rank == 1
                         else rf"\underline{{{t}}}" if cell.rank == 2 else t)
        lines.append(" & ".join([_latex_escape(label), str(n), *texts]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: ResultTable) -> str:
    """Numbers only: method, family, n, then ``<column>_mean`` / ``<column>_std`` pairs."""
    rows = []
    for label, family, n, cells in table.rows:
        rec: dict[str, object] = {"method": label, "family": family, "n": n}
        for col, cell in zip(table.columns, cells, strict=True):
            rec[f"{col.header}_mean"] = cell.mean
            rec[f"{col.header}_std"] = cell.std
        rows.append(rec)
    return pd.DataFrame(rows).to_csv(index=False)


def to_rich(table: ResultTable) -> object:
    """A ``rich.table.Table`` with the same bold / underline marking; each cell shows the
    mean over the ±std, two lines, to stay readable in a normal terminal width."""
    from rich.table import Table

    out = Table(title=table.title, header_style="bold", show_lines=True)
    width = max([len(r[0]) for r in table.rows] + [6])
    out.add_column("Method", no_wrap=True, min_width=width)
    out.add_column("n", justify="right", no_wrap=True)
    for col in table.columns:
        out.add_column(col.header, justify="right", no_wrap=True, min_width=col.decimals + 3)
    for title, row in _sections(table):
        if row is None:
            out.add_row(f"[italic]{title}[/italic]", *([""] * (len(table.columns) + 1)))
            continue
        label, _family, n, cells = row
        texts = []
        for col, cell in zip(table.columns, cells, strict=True):
            t = cell.text(col.decimals).replace("±", "\n±")
            style = "bold" if cell.rank == 1 else "underline" if cell.rank == 2 else ""
            texts.append(f"[{style}]{t}[/{style}]" if style else t)
        out.add_row(label, str(n), *texts)
    return out
