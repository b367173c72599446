"""Commands that read results: ``table``, ``evaluate``, ``plot`` and ``predict``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dhcbench.benchmark.validation import check_ratio
from dhcbench.cli.common import app, check_out_folder, console, parse_dataset, user_errors
from dhcbench.cli.store import require_existing
from dhcbench.errors import UserError


@app.command()
@user_errors
def table(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset.")] = None,
    ratio: Annotated[float | None, typer.Option("--ratio", "-r", help="Only this labeled ratio.")] = None,
    metric: Annotated[str, typer.Option(help="Per-class columns: dice or asd.")] = "dice",
    contract: Annotated[str, typer.Option(help="dhc (the reference's metric semantics) or rigorous.")] = "dhc",
    checkpoint: Annotated[str, typer.Option(help="best (best-on-eval, the paper's protocol) or last.")] = "best",
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="Print md, latex, html or csv instead of the terminal table.")] = None,
    with_paper: Annotated[bool, typer.Option("--with-paper", help="Add the published row and the difference under each method.")] = False,
    baseline: Annotated[str | None, typer.Option(help="Paired Wilcoxon test and bootstrap CI of every method against this one.")] = None,
    tail_k: Annotated[int, typer.Option("--tail-k", help="Tail column: mean Dice of the k classes with the fewest labeled voxels (0: none).")] = 4,
    out: Annotated[Path, typer.Option(help="Folder for the .md, .tex and .csv files.")] = Path("dhcbench-results"),
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "dhcbench",
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db).")] = None,
    include_failed: Annotated[bool, typer.Option("--include-failed", help="Add the failed seed runs as rows marked FAILED (they are left out and counted otherwise).")] = False,
) -> None:
    """Paper-style table (mean±std over seeds) of the finished runs in MLflow."""
    from dhcbench.reports.cli_table import render_tables

    if metric not in ("dice", "asd"):
        raise UserError(f"--metric {metric!r}: use dice or asd")
    if contract not in ("dhc", "rigorous"):
        raise UserError(f"--contract {contract!r}: use dhc or rigorous")
    if checkpoint not in ("best", "last"):
        raise UserError(f"--checkpoint {checkpoint!r}: use best or last")
    if fmt is not None and fmt not in ("md", "latex", "csv", "html"):
        raise UserError(f"--format {fmt!r}: use md, latex, html or csv")
    if tail_k < 0:
        raise UserError(f"--tail-k {tail_k}: must be >= 0")
    if baseline is not None:
        from dhcbench.methods import METHODS

        baseline = METHODS.canonical(baseline)
    if ratio is not None:
        check_ratio(ratio)
    if dataset is not None:
        from dhcbench.datasets import DATASETS

        DATASETS.get(parse_dataset(dataset)[0])
    check_out_folder(out, "--out")
    require_existing(uri, experiment)  # reading creates neither a store nor an experiment
    render_tables(console, experiment, dataset, ratio, metric, contract, checkpoint, fmt, out,
                  uri, with_paper, baseline, tail_k, include_failed)


@app.command()
@user_errors
def evaluate(
    pred: Annotated[Path, typer.Option(help="Predicted label map (.nii.gz) or a folder of them.")],
    gt: Annotated[Path, typer.Option(help="Ground-truth label map or folder, matched by case id.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset whose classes the labels use.")] = "phantom",
    out: Annotated[Path, typer.Option(help="Tidy CSV: case,class,contract,metric,value.")] = Path("metrics.csv"),
    contract: Annotated[str, typer.Option(help="Contract of the printed summary (both are in the CSV).")] = "dhc",
) -> None:
    """Score any tool's predictions under the dhc and rigorous contracts."""
    from dhcbench.datasets import DATASETS
    from dhcbench.evaluation.scoring import evaluate_files, summarise

    if contract not in ("dhc", "rigorous"):
        raise UserError(f"--contract {contract!r}: use dhc or rigorous")
    name, options = parse_dataset(dataset)
    class_names = DATASETS.get(name).spec(options, None).class_names
    rows = evaluate_files(pred, gt, class_names)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        rows.to_csv(tmp, index=False)
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"{out}: cannot write ({exc.strerror})") from exc
    summary = summarise(rows[rows.contract == contract], "test")
    pre = "test" if contract == "dhc" else f"test/{contract}"
    console.print(f"{rows.case.nunique()} case(s) scored; mean Dice "
                  f"{summary.get(pre + '/dice_mean', float('nan')):.2f} %, mean ASD "
                  f"{summary.get(pre + '/asd_mean', float('nan')):.2f} ({contract});"
                  f" rows written to {out}")


@app.command()
@user_errors
def plot(
    kind: Annotated[str, typer.Argument(help="weights, classes, slices or curves.")],
    run: Annotated[list[str], typer.Option("--run", help="MLflow seed-run id (repeat for several runs).")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG and PDF files.")] = Path("dhcbench-results/figures"),
    case: Annotated[str | None, typer.Option(help="slices: the test case (default: the first).")] = None,
    slices: Annotated[int, typer.Option(help="slices: how many axial slices.")] = 3,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "dhcbench",
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db).")] = None,
) -> None:
    """Figures of finished runs, as PNG and PDF.

    Class-weight trajectories, per-class Dice against class frequency, qualitative slices of several methods, and training curves.
    """
    from dhcbench.benchmark.mlflow_tracker import MlflowTracker
    from dhcbench.reports.cli_plot import check_kind
    from dhcbench.reports.cli_plot import plot as make_plot

    if slices < 1:
        raise UserError(f"--slices {slices}: must be >= 1")
    check_kind(kind)
    check_out_folder(out, "--out")
    require_existing(uri, experiment)  # reading creates neither a store nor an experiment
    tracker = MlflowTracker(uri, experiment)  # it exists: nothing is created
    paths = make_plot(tracker, kind, run, out, case, slices)
    console.print("written: " + ", ".join(str(p) for p in paths))


@app.command()
@user_errors
def predict(
    run: Annotated[str, typer.Option(help="MLflow seed-run id whose best checkpoint segments the images.")],
    images: Annotated[Path, typer.Option(help="A NIfTI image or a folder of them (nnU-Net: <case>_0000.nii.gz …).")],
    out: Annotated[Path, typer.Option(help="Folder for <case>.nii.gz label maps on the source grid.")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda …")] = "auto",
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "dhcbench",
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Label maps for new images, resampled back to their grid with the source affine."""
    from dhcbench.benchmark.mlflow_tracker import MlflowTracker
    from dhcbench.benchmark.progress import RichReporter
    from dhcbench.evaluation.inference import resolve_device
    from dhcbench.reports.predict import predict_images

    if not images.exists():
        raise UserError(f"--images {images}: no such file or folder")
    check_out_folder(out, "--out")
    resolve_device(device)
    require_existing(uri, experiment)  # reading creates neither a store nor an experiment
    tracker = MlflowTracker(uri, experiment)  # it exists: nothing is created
    reporter = RichReporter(console)
    with reporter:
        paths = predict_images(tracker, run, images, out, device,
                               reporter.progress_callback("predict"))
    console.print(f"{len(paths)} label map(s) written to {out}")
