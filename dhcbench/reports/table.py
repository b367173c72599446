"""The paper-style results table: rows = methods, columns Avg. Dice, Avg. ASD, an optional
tail-class column, then per-class Dice (or ASD).

Each cell is the mean ± population std over seeds (``np.std``, ddof 0, as the reference's
evaluate_Ntimes.py and the paper) of per-seed values that are themselves means over test
cases (per class) and over classes (averages). Among our rows, the best value of every
column is bold and the second underlined (higher Dice, lower ASD is better). Optional extras:
the published row and the difference beside each method (``--with-paper``), a significance
mark from the paired tests against a baseline, the number of seeds behind a cell when it
differs from its row's. Rendered for the terminal (rich), Markdown, LaTeX (booktabs), HTML
and CSV.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from dhcbench.datasets.classes import abbreviation

FAMILY_ORDER = {"bound": 0, "general": 1, "imbalance": 2, "ours": 3, "ablation": 4}
FAMILY_TITLES = {"bound": "Bounds", "general": "General", "imbalance": "Imbalance",
                 "ours": "Ours", "ablation": "Ablation"}
SIGNIFICANT = "†"


@dataclass(frozen=True)
class Cell:
    """mean ± std over ``n`` seeds (NaN mean: no value, rendered '–'; NaN std: not shown)."""

    mean: float
    std: float = math.nan
    n: int = 1
    rank: int = 0  # 1 best, 2 second, 0 neither
    signed: bool = False  # a difference: rendered with its sign, no std
    mark: str = ""
    row_n: int = 0  # the row's seed count; a different n is shown in the cell

    @property
    def empty(self) -> bool:
        return self.n == 0 or math.isnan(self.mean)

    def text(self, decimals: int) -> str:
        if self.empty:
            return "–"
        if self.signed:
            body = f"{self.mean:+.{decimals}f}"
        elif math.isnan(self.std):
            body = f"{self.mean:.{decimals}f}"
        else:
            body = f"{self.mean:.{decimals}f}±{self.std:.{decimals}f}"
        if self.row_n and self.n != self.row_n:
            body += f" (n={self.n})"
        return body + self.mark


@dataclass(frozen=True)
class Column:
    key: str  # e.g. "dice_mean", "asd_mean", "dice/liver", "tail"
    header: str
    higher_is_better: bool
    decimals: int


@dataclass
class Row:
    label: str
    family: str
    n: int
    cells: list[Cell]
    kind: str = "ours"  # ours | paper | delta


@dataclass
class ResultTable:
    """A render-ready table for one (dataset, ratio, contract, checkpoint)."""

    title: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
        rec = {"method": label, "method_key": key[0], "family": tags.get("family", "general"),
               "dataset": key[2], "ratio": float(key[3]), "seed": key[4],
               "registry": tags.get("dataset", key[2]), "classes": tags.get("classes", ""),
               "labeled_voxels": run.data.params.get("split.labeled_voxels", ""),  # type: ignore[attr-defined]
               "run_id": run.info.run_id}  # type: ignore[attr-defined]
        for metric, value in run.data.metrics.items():  # type: ignore[attr-defined]
            if metric.startswith(prefix + "/"):
                rec[metric[len(prefix) + 1:]] = value
        records.append(rec)
    return pd.DataFrame(records)


def tail_classes(class_names: Sequence[str], labeled_voxels: Sequence[int], k: int
                 ) -> list[str]:
    """The k foreground classes with the fewest labeled voxels (ties: class order)."""
    fg = [(int(n), i) for i, n in enumerate(labeled_voxels) if i > 0]
    return [class_names[i] for _, i in sorted(fg)[:k]]


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


def _sections(table: ResultTable) -> Iterator[tuple[str | None, Row | None]]:
    """Rows with a group title before each family's first row (when several families)."""
    grouped = len({row.family for row in table.rows}) > 1
    previous = None
    for row in table.rows:
        if grouped and row.family != previous:
            yield FAMILY_TITLES.get(row.family, row.family.title()), None
            previous = row.family
        yield None, row


def _n(row: Row) -> str:
    return str(row.n) if row.kind == "ours" else ""


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
        texts = []
        for col, cell in zip(table.columns, row.cells, strict=True):
            t = cell.text(col.decimals)
            texts.append(f"**{t}**" if cell.rank == 1 else f"<u>{t}</u>" if cell.rank == 2 else t)
        lines.append("| " + " | ".join([row.label, _n(row), *texts]) + " |")
    lines += [f"\n{note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                 ("#", r"\#"), ("Δ", r"$\Delta$"), ("†", r"$^\dagger$")):
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
        texts = []
        for col, cell in zip(table.columns, row.cells, strict=True):
            t = _latex_escape(cell.text(col.decimals)).replace("±", r"$\pm$").replace("–", "--")
            texts.append(rf"\textbf{{{t}}}" if cell.rank == 1
                         else rf"\underline{{{t}}}" if cell.rank == 2 else t)
        lines.append(" & ".join([_latex_escape(row.label), _n(row), *texts]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(table: ResultTable) -> str:
    """A standalone HTML ``<table>``: best ``<b>``, second ``<u>``."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in
                   ["Method", "n", *[c.header for c in table.columns]])
    body = []
    for title, row in _sections(table):
        if row is None:
            body.append(f'<tr><td colspan="{len(table.columns) + 2}"><i>{esc(title)}</i>'
                        "</td></tr>")
            continue
        cells = []
        for col, cell in zip(table.columns, row.cells, strict=True):
            t = esc(cell.text(col.decimals))
            cells.append(f"<td><b>{t}</b></td>" if cell.rank == 1 else
                         f"<td><u>{t}</u></td>" if cell.rank == 2 else f"<td>{t}</td>")
        body.append(f"<tr><td>{esc(row.label)}</td><td>{_n(row)}</td>{''.join(cells)}</tr>")
    notes = "".join(f"<p>{esc(n)}</p>" for n in table.notes)
    return (f"<table>\n<caption>{esc(table.title)}</caption>\n<thead><tr>{head}</tr></thead>\n"
            "<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n" + notes)


def to_csv(table: ResultTable, extra: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """Numbers only: method, family, kind, n, then ``<column>_mean`` / ``_std`` / ``_n`` per
    column; ``extra`` adds per-method columns (the statistics against a baseline)."""
    rows = []
    for row in table.rows:
        rec: dict[str, object] = {"method": row.label, "family": row.family, "kind": row.kind,
                                  "n": row.n}
        for col, cell in zip(table.columns, row.cells, strict=True):
            rec[f"{col.header}_mean"] = cell.mean
            rec[f"{col.header}_std"] = cell.std
            rec[f"{col.header}_n"] = cell.n
        for key, value in (extra or {}).get(row.label, {}).items() if row.kind == "ours" else ():
            rec[key] = value
        rows.append(rec)
    return pd.DataFrame(rows).to_csv(index=False)


def to_rich(table: ResultTable) -> object:
    """A ``rich.table.Table`` with the same bold / underline marking; each cell shows the
    mean over the ±std, two lines, to stay readable in a normal terminal width."""
    from rich.table import Table

    out = Table(title=table.title, header_style="bold", show_lines=True,
                caption=" ".join(table.notes) or None)
    width = max([len(r.label) for r in table.rows] + [6])
    out.add_column("Method", no_wrap=True, min_width=width)
    out.add_column("n", justify="right", no_wrap=True)
    for col in table.columns:
        out.add_column(col.header, justify="right", no_wrap=True, min_width=col.decimals + 3)
    for title, row in _sections(table):
        if row is None:
            out.add_row(f"[italic]{title}[/italic]", *([""] * (len(table.columns) + 1)))
            continue
        texts = []
        for col, cell in zip(table.columns, row.cells, strict=True):
            t = cell.text(col.decimals).replace("±", "\n±")
            style = "bold" if cell.rank == 1 else "underline" if cell.rank == 2 else ""
            if row.kind != "ours":
                style = "dim"
            texts.append(f"[{style}]{t}[/{style}]" if style else t)
        out.add_row(row.label, _n(row), *texts)
    return out
