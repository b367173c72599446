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
    metric: Annotated[str, typer.Option(help="Per-class columns: dice, asd or hd95 (hd95: rigorous contract only; it is the default contract then).")] = "dice",
    contract: Annotated[str | None, typer.Option(help="dhc (the reference's metric semantics; default) or rigorous (symmetric ASD and HD95 in mm, undefined values left out).")] = None,
    checkpoint: Annotated[str, typer.Option(help="best (best-on-eval, the paper's protocol) or last.")] = "best",
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="Print md, latex, html or csv instead of the terminal table.")] = None,
    with_paper: Annotated[bool, typer.Option("--with-paper", help="Add the published row and the difference under each method.")] = False,
    baseline: Annotated[str | None, typer.Option(help="Paired Wilcoxon test and bootstrap CI of every method against this one.")] = None,
    tail_k: Annotated[int, typer.Option("--tail-k", help="Tail column: mean Dice of the k classes with the fewest labeled voxels (0: none).")] = 4,
    std: Annotated[bool, typer.Option("--std", help="Terminal table: ± on every cell (default: on the averages only; the files always have every ±).")] = False,
    out: Annotated[Path, typer.Option(help="Folder for the .md, .tex, .html and .csv files; their names encode the options (e.g. table_phantom_20p_dhc_dice_best_paper_vs-cps.md).")] = Path("dhcbench-results"),
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "dhcbench",
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db).")] = None,
    include_failed: Annotated[bool, typer.Option("--include-failed", help="Add the failed seed runs as rows marked FAILED (they are left out and counted otherwise).")] = False,
) -> None:
    """Paper-style table (mean±std over seeds) of the finished runs in MLflow.

    The terminal table fits the console width: ± on the averages only (--std: everywhere), and its columns stacked in blocks when they do not fit side by side. "–" marks no value, "n/a" an undefined one.
    """
    from dhcbench.reports.cli_table import render_tables

    if metric not in ("dice", "asd", "hd95"):
        raise UserError(f"--metric {metric!r}: use dice, asd or hd95")
    if contract is None:
        contract = "rigorous" if metric == "hd95" else "dhc"
    if contract not in ("dhc", "rigorous"):
        raise UserError(f"--contract {contract!r}: use dhc or rigorous")
    if metric == "hd95" and contract != "rigorous":
        raise UserError("--metric hd95: HD95 is logged under the rigorous contract only"
                        " (use --contract rigorous)")
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
                  uri, with_paper, baseline, tail_k, include_failed, std)


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

    Class-weight trajectories, per-class Dice against class frequency, qualitative slices of several methods, and training curves. Every organ has one colour in every figure (a colour-blind-safe palette); epochs are whole numbers.

    File names name the runs: weights_<run name>_<short id> and curves_<run name>_<short id> (one per run); classes_<methods>_<short ids> and slices_<case>_<methods>_<short ids> (past 4 runs: <n>runs-<hash>).

    weights: a run whose class weights never changed during training (CPS's uniform weights, CLD's fixed ones) gets no figure: a note says so instead of a flat plot.
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
    paths = make_plot(tracker, kind, run, out, case, slices,
                      say=lambda note: console.print(note, markup=False, highlight=False))
    console.print(("written: " + ", ".join(str(p) for p in paths)) if paths else "no figure written")


@app.command()
@user_errors
def predict(
    run: Annotated[str, typer.Option(help="MLflow seed-run id whose checkpoint segments the images (a parent-run id with --ensemble).")],
    images: Annotated[Path, typer.Option(help="A NIfTI image or a folder of them (nnU-Net: <case>_0000.nii.gz …).")],
    out: Annotated[Path, typer.Option(help="Folder for <case>.nii.gz label maps on the source grid.")],
    checkpoint: Annotated[str, typer.Option(help="best (best-on-eval best.pt) or last (end-of-training last.pt, only in the run's checkpoint folder on this machine).")] = "best",
    ensemble: Annotated[bool, typer.Option("--ensemble", help="--run is a parent run: average the softmax probabilities of all its FINISHED seed runs, then argmax (a seed-run id ensembles just itself).")] = False,
    save_probabilities: Annotated[bool, typer.Option("--save-probabilities", help="Also write <case>_probabilities.npz: 'probabilities', float16 (classes, X, Y, Z) in the NIfTI's axis order on the source grid (nearest neighbour, like the label map), and 'class_names'.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda …")] = "auto",
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "dhcbench",
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Label maps for new images, resampled back to their grid with the source affine."""
    from dhcbench.benchmark.mlflow_tracker import MlflowTracker
    from dhcbench.benchmark.progress import RichReporter
    from dhcbench.evaluation.inference import resolve_device
    from dhcbench.reports.predict import predict_images

    if checkpoint not in ("best", "last"):
        raise UserError(f"--checkpoint {checkpoint!r}: use best or last")
    if not images.exists():
        raise UserError(f"--images {images}: no such file or folder")
    check_out_folder(out, "--out")
    resolve_device(device)
    require_existing(uri, experiment)  # reading creates neither a store nor an experiment
    tracker = MlflowTracker(uri, experiment)  # it exists: nothing is created
    members: list[str] = []
    reporter = RichReporter(console)
    with reporter:
        paths = predict_images(tracker, run, images, out, device,
                               reporter.progress_callback("predict"), checkpoint=checkpoint,
                               ensemble=ensemble, save_probabilities=save_probabilities,
                               on_members=members.extend)
    what = f"ensemble of {len(members)} seed run(s), " if ensemble else ""
    extra = " with probabilities" if save_probabilities else ""
    console.print(f"{len(paths)} label map(s){extra} written to {out} ({what}{checkpoint}"
                  " checkpoint)")
