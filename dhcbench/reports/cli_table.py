"""``dhcbench table``: read finished seed runs from MLflow and render the tables."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from dhcbench.benchmark.tracking import ROLE, open_tracker
from dhcbench.datasets import DATASETS
from dhcbench.datasets.splits import ratio_tag
from dhcbench.errors import UserError
from dhcbench.reports.table import build_table, seed_records, to_csv, to_latex, to_markdown, to_rich


def class_names_of(group: object) -> tuple[str, ...]:
    """Class names recorded with the runs (tag ``classes``), else the registered dataset's."""
    tagged = [c for c in group["classes"] if c]  # type: ignore[index]
    if tagged:
        return tuple(str(tagged[0]).split(","))
    registry = str(group["registry"].iloc[0])  # type: ignore[index]
    return DATASETS.get(registry).spec({}, None).class_names


RENDERERS = {"md": (to_markdown, "md"), "latex": (to_latex, "tex"), "csv": (to_csv, "csv")}


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
) -> list[Path]:
    """Print one table per (dataset, ratio) and write .md/.tex/.csv files to ``out``."""
    if uri is None and not os.environ.get("MLFLOW_TRACKING_URI") and not Path(
            "mlflow.db").is_file():
        raise UserError("no MLflow store here (no mlflow.db in this folder and no"
                        " MLFLOW_TRACKING_URI); run `dhcbench run` in this folder first")
    tracker = open_tracker(uri, experiment)
    tracker.reap_stale()
    runs = tracker.search(f"tags.`{ROLE}` = 'seed' and attributes.status = 'FINISHED'")
    prefix = "test" if checkpoint == "best" else "test_last"
    records = seed_records(runs, prefix)
    if dataset is not None and len(records):
        records = records[(records.dataset == dataset) | (records.registry == dataset)]
    if ratio is not None and len(records):
        records = records[(records.ratio - ratio).abs() < 1e-9]
    if records.empty:
        raise UserError(f"no finished runs in experiment {experiment!r} match"
                        f"{' dataset ' + dataset if dataset else ''}"
                        f"{' ratio ' + format(ratio, 'g') if ratio is not None else ''}")
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    for (ds_name, r), group in records.groupby(["dataset", "ratio"]):
        class_names = class_names_of(group)
        title = (f"{ds_name} {float(r) * 100:g}% labeled — {metric.upper()} per class,"
                 f" contract {contract}, {checkpoint} checkpoint (mean±std over seeds)")
        table = build_table(group, class_names, title, contract, metric)
        stem = f"table_{ds_name}_{ratio_tag(float(r))}_{contract}_{metric}_{checkpoint}"
        for _name, (render, ext) in RENDERERS.items():
            path = out / f"{stem}.{ext}"
            path.write_text(render(table))
            written.append(path)
        if fmt is None:
            # Pipes and CI logs get a wide page instead of rich's 80-column default.
            page = console if console.is_terminal else Console(width=240, file=console.file)
            page.print(to_rich(table))
        else:
            console.print(RENDERERS[fmt][0](table), markup=False, highlight=False, end="",
                          soft_wrap=True)
    if fmt is None:
        console.print(f"written: {', '.join(str(p) for p in written)}")
    return written
