"""The terminal rendering of a :class:`~dhcbench.reports.cells.ResultTable` (rich).

A terminal table must fit the console: no column is dropped and no cell is cut. So the
table is compact by default — the averages (Avg. Dice, Avg. ASD, Tail-k) show mean±std, the
per-class columns the mean alone, as the paper prints them (``std=True`` shows ± on every
cell) — and when its columns are still wider than the console they are laid out in stacked
blocks, each repeating the Method and n columns. The title and the notes are printed as
text, wrapped by the console at word boundaries. The files (Markdown, LaTeX, HTML, CSV)
always carry every ± (:mod:`~dhcbench.reports.render`).
"""

from __future__ import annotations

import math

from rich import box
from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text

from dhcbench.reports.cells import ResultTable, Row
from dhcbench.reports.render import sections

#: Row styles by kind: published and difference rows recede, failed rows stand out.
ROW_STYLES = {"paper": "dim", "delta": "dim", "failed": "red"}


def _n(row: Row) -> str:
    return str(row.n) if row.kind == "ours" else ""


def _cell_texts(table: ResultTable, row: Row, columns: list[int], std: bool) -> list[Text]:
    texts = []
    for j in columns:
        col, cell = table.columns[j], row.cells[j]
        style = "bold" if cell.rank == 1 else "underline" if cell.rank == 2 else ""
        style = ROW_STYLES.get(row.kind, style)
        texts.append(Text(cell.text(col.decimals, std=std or col.average), style=style))
    return texts


def _block(table: ResultTable, columns: list[int], std: bool) -> Table:
    """A rich table of the Method and n columns and the value columns ``columns``."""
    out = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    out.add_column("Method", overflow="fold")
    out.add_column("n", justify="right", no_wrap=True)
    for j in columns:
        out.add_column(table.columns[j].header, justify="right", no_wrap=True,
                       overflow="fold")
    for title, row in sections(table):
        if row is None:
            out.add_row(Text(str(title), style="italic"), *([""] * (len(columns) + 1)))
        else:
            out.add_row(Text(row.label, style=ROW_STYLES.get(row.kind, "")), _n(row),
                        *_cell_texts(table, row, columns, std))
    return out


#: Characters between two columns of a block: one space of padding each side, one rule.
GAP = 3


def _widths(table: ResultTable, std: bool) -> tuple[int, list[int]]:
    """The width of the leading Method and n columns together, and of each value column."""
    rows = [row for _, row in sections(table) if row is not None]
    titles = [str(t) for t, row in sections(table) if row is None]
    method = max(cell_len(s) for s in ["Method", *titles, *(r.label for r in rows)])
    n = max(cell_len(s) for s in ["n", *(_n(r) for r in rows)])
    values = []
    for j, col in enumerate(table.columns):
        texts = [r.cells[j].text(col.decimals, std=std or col.average) for r in rows]
        values.append(max(cell_len(s) for s in [col.header, *texts]))
    return method + GAP + n, values


def _span(lead: int, values: list[int], block: range) -> int:
    return lead + sum(GAP + values[j] for j in block)


def column_blocks(table: ResultTable, width: int, std: bool = False) -> list[list[int]]:
    """The value columns split into as few blocks as fit ``width``, as even as they fit.

    Blocks hold consecutive columns (the averages lead the first) and repeat the Method
    and n columns. The number of blocks is the fewest that fit; over that number, the
    split with the narrowest widest block is chosen, so the blocks end up about as wide.
    A single column wider than ``width`` gets a block of its own.
    """
    lead, values = _widths(table, std)
    total = len(values)
    count, used = 1, lead  # the fewest blocks: fill each until the next column overflows
    for j in range(total):
        if used > lead and used + GAP + values[j] > width:
            count, used = count + 1, lead
        used += GAP + values[j]
    # best[k][i]: the narrowest widest block splitting columns[:i] into k blocks, with cuts.
    inf = (math.inf, ())
    best: list[list[tuple[float, tuple[int, ...]]]] = [[inf] * (total + 1)
                                                       for _ in range(count + 1)]
    best[0][0] = (0, ())
    for k in range(1, count + 1):
        for i in range(1, total + 1):
            for start in range(i):
                prev, cuts = best[k - 1][start]
                span = _span(lead, values, range(start, i))
                widest = max(prev, span)
                if widest < best[k][i][0] and (span <= width or i - start == 1):
                    best[k][i] = (widest, (*cuts, i))
    cuts = best[count][total][1]
    return [list(range(a, b)) for a, b in zip((0, *cuts[:-1]), cuts, strict=True)]


def to_rich(table: ResultTable, width: int = 80, std: bool = False) -> Group:
    """Render the table for a console ``width`` columns wide, as a printable rich Group.

    The bold title, then the value columns in one or more stacked blocks (see
    :func:`column_blocks`), then the notes. Best cells are bold, second underlined;
    published and difference rows are dimmed. ``std`` shows ± on every cell (default: on
    the averages only).
    """
    parts: list[object] = [Text(table.title, style="bold")]
    for block in column_blocks(table, width, std):
        parts += [Text(""), _block(table, block, std)]
    if table.notes:
        parts.append(Text(""))
    parts += [Text(note) for note in table.notes]
    return Group(*parts)
