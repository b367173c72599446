"""``dhcbench table``: read finished seed runs from MLflow and render the tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from dhcbench.benchmark.tracking import FAILURE, ROLE, Tracker, open_tracker, require_store
from dhcbench.datasets import DATASETS
from dhcbench.datasets.classes import abbreviation
from dhcbench.datasets.splits import ratio_tag
from dhcbench.errors import UserError
from dhcbench.reports.cells import Cell, Row
from dhcbench.reports.paper import PaperRow, published_row
from dhcbench.reports.records import select_records
from dhcbench.reports.significance import (
    baseline_statistics,
    significance_marks,
    significance_note,
)
from dhcbench.reports.table import (
    ResultTable,
    build_table,
    recorded_tail,
    seed_records,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
    to_rich,
)

EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv", "html": "html"}


def class_names_of(group: pd.DataFrame) -> tuple[str, ...]:
    """The class names of a table's runs, background first.

    Those recorded with the runs (tag ``classes``) when there are any, else the class names
    of the registered dataset the runs used.
    """
    tagged = [c for c in group["classes"] if c]
    if tagged:
        return tuple(str(tagged[0]).split(","))
    registry = str(group["registry"].iloc[0])
    return DATASETS.get(registry).spec({}, None).class_names


def _records(tracker: Tracker, status: str, dataset: str | None, ratio: float | None,
             checkpoint: str) -> pd.DataFrame:
    """The records of the seed runs with ``status`` (FINISHED or FAILED) for ``checkpoint``."""
    runs = tracker.search(f"tags.`{ROLE}` = 'seed' and attributes.status = '{status}'")
    prefix = "test" if checkpoint == "best" else "test_last"
    records = select_records(seed_records(runs, prefix), dataset, ratio)
    if status == "FAILED" and len(records):
        reasons = {r.info.run_id: r.data.tags.get(FAILURE, "no reason recorded") for r in runs}
        records = records.assign(reason=records.run_id.map(reasons))
    return records


def _failed_records(tracker: Tracker, finished: pd.DataFrame, dataset: str | None,
                    ratio: float | None, checkpoint: str) -> pd.DataFrame:
    """The FAILED seed runs (newest per configuration) that no finished run replaced."""
    failed = _records(tracker, "FAILED", dataset, ratio, checkpoint)
    if failed.empty or finished.empty:
        return failed
    key = ["method", "dataset", "ratio", "seed"]
    done = set(finished[key].itertuples(index=False, name=None))
    return failed[[k not in done for k in failed[key].itertuples(index=False, name=None)]]


def _failed_text(failed: pd.DataFrame) -> str:
    """``dhc seed 0 (training diverged: …); …`` for a note or an error."""
    return "; ".join(f"{r.method} seed {r.seed} ({r.reason})" for r in failed.itertuples())


def _finished_records(tracker: Tracker, experiment: str, dataset: str | None,
                      ratio: float | None, checkpoint: str
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The finished and the failed seed runs' records; no finished run is a UserError."""
    records = _records(tracker, "FINISHED", dataset, ratio, checkpoint)
    failed = _failed_records(tracker, records, dataset, ratio, checkpoint)
    if records.empty:
        raise UserError(f"no finished runs in experiment {experiment!r} match"
                        f"{' dataset ' + dataset if dataset else ''}"
                        f"{' ratio ' + format(ratio, 'g') if ratio is not None else ''}"
                        + (f" ({len(failed)} failed: {_failed_text(failed)})"
                           if len(failed) else ""))
    return records, failed


def _add_failed(table: ResultTable, failed: pd.DataFrame, include: bool) -> None:
    """Say which failed runs a table leaves out, or add them as rows marked FAILED."""
    if failed.empty:
        return
    if not include:
        table.notes.append(f"Left out {len(failed)} failed seed run(s): {_failed_text(failed)}."
                           " --include-failed adds them, marked.")
        return
    for r in failed.itertuples():
        cells = [Cell(float("nan"), n=0) for _ in table.columns]
        table.rows.append(Row(f"{r.method} seed {r.seed} FAILED", str(r.family), 0, cells,
                              kind="failed"))
    table.notes.append(f"FAILED rows: seed runs that failed (no values): {_failed_text(failed)}.")


def _tail_of(group: pd.DataFrame, class_names: tuple[str, ...], tail_k: int) -> list[str]:
    """The tail classes of a table (none when ``tail_k`` is 0 or no counts were logged)."""
    voxels = [v for v in group["labeled_voxels"] if v]
    return recorded_tail(class_names, voxels[0] if voxels else "", tail_k)


def _published_rows(group: pd.DataFrame, ratio: float) -> dict[str, PaperRow]:
    """The paper's row of every method in ``group`` run with its reference variant."""
    registry = str(group["registry"].iloc[0])
    if registry == "phantom":  # the phantom stands in for Synapse (same classes)
        registry = "synapse"
    paper = {}
    for label, key in zip(group["method"], group["method_key"], strict=True):
        published = published_row(registry, ratio, str(key))
        if published is not None and label == key:
            paper[label] = published
    return paper


#: What each contract's distances are, for the title and the notes.
UNITS = {"dhc": "voxels", "rigorous": "mm"}


def table_title(dataset: str, ratio: float, metric: str, contract: str, checkpoint: str
                ) -> str:
    """The title of a table: what it holds, with the unit of every kind of column."""
    unit = UNITS[contract]
    units = {"dice": "Dice (%)", "asd": f"ASD ({unit})", "hd95": f"HD95 ({unit})"}
    averaged = ["dice", "asd"] + (["hd95"] if metric == "hd95" else [])
    return (f"{dataset} {ratio * 100:g}% labeled — per class: {units[metric]}; averages:"
            f" {', '.join(units[m] for m in averaged)} — {contract} contract,"
            f" {checkpoint} checkpoint, mean±std over seeds")


def _contract_note(contract: str, n_classes: int) -> str:
    """How the contract measures, and (dhc) which classes the averages cover."""
    if contract == "dhc":
        return ("Contract dhc (the reference code's): Dice in %, ASD in voxels of the"
                " evaluation grid, directed from the prediction's surface to the ground"
                f" truth's; averages over all {n_classes} classes for every row (this"
                " contract gives every class a value: Dice 0 / ASD 128 when one side is"
                " empty).")
    return ("Contract rigorous: Dice in %, ASD (symmetric) and HD95 in mm from the voxel"
            " spacing; undefined values are NaN and left out.")


def _add_notes(table: ResultTable, group: pd.DataFrame, has_published: bool, tail: list[str],
               baseline: str | None, contract: str, n_classes: int) -> None:
    """Explain the table: the contract, the published rows, the tail column, the marks."""
    table.notes.insert(0, _contract_note(contract, n_classes))
    if has_published and str(group["registry"].iloc[0]) == "phantom":
        table.notes.append("The published rows are the paper's Synapse numbers; the"
                           " phantom is synthetic, so compare the pattern, not the values.")
    if tail:
        table.notes.append(f"Tail-{len(tail)}: mean Dice of the {len(tail)} classes with"
                           " the fewest labeled voxels"
                           f" ({', '.join(abbreviation(c) for c in tail)}).")
    if baseline:
        table.notes.append(significance_note(baseline))


def table_stem(dataset: str, ratio: float, contract: str, metric: str, checkpoint: str,
               with_paper: bool = False, baseline: str | None = None, tail_k: int = 4) -> str:
    """The file name (no extension) of a table: every option that changes its columns or rows.

    ``table_<dataset>_<ratio tag>_<contract>_<metric>_<checkpoint>``, then ``_paper``,
    ``_vs-<baseline>`` and ``_tail<k>`` (a k other than 4) when those options are set, so a
    plain table never overwrites one with the published rows. ``--include-failed`` keeps the
    name: the plain table already names the failed runs in a note.
    """
    stem = f"table_{dataset}_{ratio_tag(ratio)}_{contract}_{metric}_{checkpoint}"
    if with_paper:
        stem += "_paper"
    if baseline:
        stem += f"_vs-{baseline}"
    if tail_k != 4:
        stem += f"_tail{tail_k}"
    return stem


def _write_renders(rendered: dict[str, str], out: Path, stem: str) -> list[Path]:
    """Write each rendering to ``out/<stem>.<extension>``; returns the paths."""
    paths = []
    for key, text in rendered.items():
        path = out / f"{stem}.{EXTENSIONS[key]}"
        path.write_text(text)
        paths.append(path)
    return paths


def _show(console: Console, table: ResultTable, rendered: dict[str, str], fmt: str | None,
          std: bool) -> None:
    """Print the terminal table (``fmt`` None) or the chosen rendering as plain text.

    The terminal table fits the console's width (``$COLUMNS`` when set; rich's 80 columns
    on a pipe), in stacked blocks of columns when it must.
    """
    if fmt is None:
        console.print(to_rich(table, console.width, std))
    else:
        console.print(rendered[fmt], markup=False, highlight=False, end="", soft_wrap=True)


def render_tables(
    console: Console,
    experiment: str,
    dataset: str | None,
    ratio: float | None,
    metric: str,
    contract: str,
    checkpoint: str,
    fmt: str | None,
    out: Path,
    uri: str | None = None,
    with_paper: bool = False,
    baseline: str | None = None,
    tail_k: int = 4,
    include_failed: bool = False,
    std: bool = False,
) -> list[Path]:
    """Print one table per (dataset, ratio) and write .md/.tex/.html/.csv files to ``out``.

    The tables hold the finished seed runs of ``experiment`` (optionally only ``dataset``
    and / or ``ratio``), ``metric`` per class under ``contract`` at ``checkpoint`` (best or
    last). ``fmt`` None prints the terminal table, else that rendering (md, latex, html or
    csv). ``with_paper`` adds the published rows, ``baseline`` the paired statistics against
    that method, ``tail_k`` > 0 the tail-class column. Failed seed runs are left out and
    counted in a note; ``include_failed`` adds them as rows marked FAILED. The terminal
    table shows ± on the averages only unless ``std`` (the files always show every ±).
    Prints and returns the written files (their names encode the options:
    :func:`table_stem`).
    """
    require_store(uri)
    tracker = open_tracker(uri, experiment, create=False)
    tracker.reap_stale()
    records, failed = _finished_records(tracker, experiment, dataset, ratio, checkpoint)
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    for (ds_name, r), group in records.groupby(["dataset", "ratio"]):
        class_names = class_names_of(group)
        tail = _tail_of(group, class_names, tail_k)
        stats = (baseline_statistics(tracker, group, baseline, contract, checkpoint)
                 if baseline else {})
        paper = _published_rows(group, float(r)) if with_paper else {}
        title = table_title(str(ds_name), float(r), metric, contract, checkpoint)
        table = build_table(group, class_names, title, contract, metric, tail, paper,
                            significance_marks(stats))
        _add_notes(table, group, bool(paper), tail, baseline, contract, len(class_names) - 1)
        _add_failed(table, failed[(failed.dataset == ds_name) & (failed.ratio == r)]
                    if len(failed) else failed, include_failed)
        rendered = {"md": to_markdown(table), "latex": to_latex(table), "html": to_html(table),
                    "csv": to_csv(table, stats)}
        stem = table_stem(str(ds_name), float(r), contract, metric, checkpoint, with_paper,
                          baseline, tail_k)
        paths = _write_renders(rendered, out, stem)
        _show(console, table, rendered, fmt, std)
        # With --format the rendering alone goes to stdout (it may be piped to a file).
        (console if fmt is None else Console(stderr=True)).print(
            f"written: {', '.join(str(p) for p in paths)}", markup=False, highlight=False,
            soft_wrap=True)
        written += paths
    return written
