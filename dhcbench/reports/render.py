"""Rendering a :class:`~dhcbench.reports.cells.ResultTable` to files: Markdown, LaTeX, HTML, CSV.

Every text renderer shows the rows in order, with a group title before each family's first
row when the table holds several families; the best value of a column is bold and the
second underlined, each format in its own markup; every cell shows its ± and every note
follows the table. CSV carries the numbers only. The terminal rendering is
:mod:`~dhcbench.reports.terminal`.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping

import pandas as pd

from dhcbench.reports.cells import FAMILY_TITLES, ResultTable, Row


def sections(table: ResultTable) -> Iterator[tuple[str | None, Row | None]]:
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


def to_markdown(table: ResultTable) -> str:
    """Render the table as GitHub Markdown.

    A bold title line, then a pipe table with the columns Method, n and the value columns;
    group titles are italic rows. Best cells are ``**bold**``, second ``<u>underlined</u>``;
    the notes follow as paragraphs.
    """
    head = ["Method", "n"] + [c.header for c in table.columns]
    lines = [f"**{table.title}**", "", "| " + " | ".join(head) + " |",
             "|" + "|".join([":---", "--:"] + ["--:"] * len(table.columns)) + "|"]
    for title, row in sections(table):
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


#: LaTeX for the characters that are special to it or outside its default fonts.
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#",
          "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
          "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
          "Δ": r"$\Delta$", "†": r"$^\dagger$", "±": r"$\pm$", "–": "--", "—": "---",
          "…": r"\dots{}", "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "→": r"$\to$",
          "·": r"$\cdot$"}


def latex_escape(text: str) -> str:
    """``text`` as LaTeX source: special characters escaped, symbols in math mode."""
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_latex(table: ResultTable) -> str:
    r"""Render the table as a LaTeX booktabs ``table`` environment.

    The tabular is scaled to the text width; group titles span the row in italics. Best
    cells are ``\textbf``, second ``\underline``; ± becomes ``$\pm$`` and '–' ``--``. The
    caption is the title; every note (the marks †, Δ, "(paper)", the tail classes, the
    averaging rule, n/a and –) follows the tabular as a footnote-size block inside the
    ``table`` environment.
    """
    ncols = 2 + len(table.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{l" + "c" * (ncols - 1) + "}",
        r"\toprule",
        " & ".join(["Method", "$n$"] + [latex_escape(c.header) for c in table.columns])
        + r" \\",
        r"\midrule",
    ]
    for title, row in sections(table):
        if row is None:
            lines.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{latex_escape(title)}}}}} \\")
            continue
        texts = []
        for col, cell in zip(table.columns, row.cells, strict=True):
            t = latex_escape(cell.text(col.decimals))
            texts.append(rf"\textbf{{{t}}}" if cell.rank == 1
                         else rf"\underline{{{t}}}" if cell.rank == 2 else t)
        lines.append(" & ".join([latex_escape(row.label), _n(row), *texts]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if table.notes:
        lines += [r"\par\smallskip", r"\begin{minipage}{\textwidth}\footnotesize\raggedright",
                  "\\par\n".join(latex_escape(note) for note in table.notes),
                  r"\end{minipage}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(table: ResultTable) -> str:
    """Render the table as a standalone HTML ``<table>``.

    The title is the caption, group titles are italic full-width rows, best cells ``<b>``,
    second ``<u>``; the notes follow as ``<p>`` paragraphs. All text is HTML-escaped.
    """
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in
                   ["Method", "n", *[c.header for c in table.columns]])
    body = []
    for title, row in sections(table):
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
    """Render the table's numbers as CSV, one line per row (group titles left out).

    Columns: method, family, kind, n, then ``<header>_mean`` / ``_std`` / ``_n`` for every
    value column (unrounded; NaN where missing). ``extra`` maps a method label to further
    columns of its ``ours`` row (the statistics against a baseline).
    """
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
