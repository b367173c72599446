"""``dhcbench table``: read finished seed runs from MLflow and render the tables."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console

from dhcbench.benchmark.tracking import ROLE, Tracker, open_tracker, require_store
from dhcbench.datasets import DATASETS
from dhcbench.datasets.splits import ratio_tag
from dhcbench.errors import UserError
from dhcbench.reports.paper import paper_row
from dhcbench.reports.stats import case_means, paired_test
from dhcbench.reports.table import (
    SIGNIFICANT,
    build_table,
    seed_records,
    tail_classes,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
    to_rich,
)

EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv", "html": "html"}


def class_names_of(group: pd.DataFrame) -> tuple[str, ...]:
    """Class names recorded with the runs (tag ``classes``), else the registered dataset's."""
    tagged = [c for c in group["classes"] if c]
    if tagged:
        return tuple(str(tagged[0]).split(","))
    registry = str(group["registry"].iloc[0])
    return DATASETS.get(registry).spec({}, None).class_names


def _case_rows(tracker: Tracker, run_id: str, checkpoint: str, seed: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.download_artifact(run_id, f"metrics/test_cases_{checkpoint}.csv",
                                         Path(tmp))
        rows = pd.read_csv(path)
    rows["seed"] = seed
    return rows


def baseline_statistics(tracker: Tracker, group: pd.DataFrame, baseline: str, contract: str,
                        checkpoint: str) -> dict[str, dict[str, float]]:
    """Paired tests of every method against ``baseline`` over (case, seed) pairs."""
    means = {}
    for label, runs in group.groupby("method"):
        frames = [_case_rows(tracker, r.run_id, checkpoint, r.seed) for r in runs.itertuples()]
        means[str(label)] = case_means(pd.concat(frames), contract)
    if baseline not in means:
        raise UserError(f"--baseline {baseline}: no finished runs of it in this table"
                        f" (methods: {', '.join(sorted(means))})")
    return {label: paired_test(series, means[baseline]).as_dict()
            for label, series in means.items() if label != baseline}


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
) -> list[Path]:
    """Print one table per (dataset, ratio) and write .md/.tex/.html/.csv files to ``out``."""
    require_store(uri)
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
        voxels = [v for v in group["labeled_voxels"] if v]
        tail = (tail_classes(class_names, [int(x) for x in voxels[0].split(",")], tail_k)
                if voxels and tail_k > 0 else [])
        stats = (baseline_statistics(tracker, group, baseline, contract, checkpoint)
                 if baseline else {})
        marks = {m: SIGNIFICANT for m, s in stats.items() if s["wilcoxon_p"] < 0.05}
        paper = {}
        if with_paper:
            registry = str(group["registry"].iloc[0])
            if registry == "phantom":  # the phantom stands in for Synapse (same classes)
                registry = "synapse"
            for label, key in zip(group["method"], group["method_key"], strict=True):
                published = paper_row(registry, float(r), str(key))
                if published is not None and label == key:
                    paper[label] = published
        title = (f"{ds_name} {float(r) * 100:g}% labeled — {metric.upper()} per class,"
                 f" contract {contract}, {checkpoint} checkpoint (mean±std over seeds)")
        table = build_table(group, class_names, title, contract, metric, tail, paper, marks)
        if paper and str(group["registry"].iloc[0]) == "phantom":
            table.notes.append("The published rows are the paper's Synapse numbers; the"
                               " phantom is synthetic, so compare the pattern, not the values.")
        if tail:
            table.notes.append(f"Tail-{len(tail)}: mean Dice of the {len(tail)} classes with"
                               f" the fewest labeled voxels ({', '.join(tail)}).")
        if baseline:
            table.notes.append(f"{SIGNIFICANT}: paired Wilcoxon p < 0.05 against {baseline}"
                               " over (case, seed) pairs; the CSV has the p-values and"
                               " bootstrap 95 % intervals of the mean Dice difference.")
        rendered = {"md": to_markdown(table), "latex": to_latex(table), "html": to_html(table),
                    "csv": to_csv(table, stats)}
        stem = f"table_{ds_name}_{ratio_tag(float(r))}_{contract}_{metric}_{checkpoint}"
        for key, text in rendered.items():
            path = out / f"{stem}.{EXTENSIONS[key]}"
            path.write_text(text)
            written.append(path)
        if fmt is None:
            # Pipes and CI logs get a wide page instead of rich's 80-column default.
            page = console if console.is_terminal else Console(width=240, file=console.file)
            page.print(to_rich(table))
        else:
            console.print(rendered[fmt], markup=False, highlight=False, end="", soft_wrap=True)
    if fmt is None:
        console.print(f"written: {', '.join(str(p) for p in written)}")
    return written
