"""The ``dhcbench`` command line (Typer). Thin: parses, builds specs, calls the parts.

Every error caused by the input is one line on stderr and exit code 2 (``UserError``); an
interrupted run exits with 130 after marking its MLflow runs KILLED.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dhcbench.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Class-imbalanced semi-supervised 3D segmentation benchmark: DHC and its baselines.",
    pretty_exceptions_enable=False,
)
console = Console(log_path=False)
err_console = Console(stderr=True)


@app.callback()
def _quiet_libraries() -> None:
    """Keep the terminal for dhcbench's own output: MLflow's INFO chatter is dropped."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def parse_dataset(text: str) -> tuple[str, dict]:
    """``nnunet:<name>`` -> ("nnunet", {"name": <name>}); other names have no options."""
    name, _, option = text.partition(":")
    return name, ({"name": option} if option else {})


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def run(
    method: Annotated[str, typer.Option("--method", "-m", help="Method key (see `dhcbench methods`).")] = "dhc",
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset key (see `dhcbench datasets`).")] = "phantom",
    ratio: Annotated[float, typer.Option("--ratio", "-r", help="Labeled fraction of the training cases, e.g. 0.2.")] = 0.2,
    seeds: Annotated[int, typer.Option(help="Number of seeds: the paper's 0, 1, 666 first.")] = 1,
    seed_list: Annotated[str | None, typer.Option("--seed-list", help="Explicit seeds, e.g. 0,1,666.")] = None,
    variant: Annotated[str | None, typer.Option(help="reference (the official code) or paper (the paper's equations).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Shortcut for --set train.epochs=N.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1 …")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of setting overrides.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override one setting, e.g. train.lr=0.01 (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for checkpoints (default ./dhcbench-runs).")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name (default dhcbench).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the latest unfinished run of this configuration.")] = False,
) -> None:
    """Train and test a method on a dataset for one or more seeds, tracked in MLflow."""
    from dhcbench.benchmark.progress import RichReporter
    from dhcbench.benchmark.runner import (
        RunInterrupted,
        default_layers,
        execute,
        plan_run,
    )
    from dhcbench.benchmark.runner import (
        seed_list as make_seeds,
    )
    from dhcbench.benchmark.tracking import open_tracker
    from dhcbench.reports.run_figures import log_run_figures

    try:
        explicit = None
        if seed_list:
            try:
                explicit = [int(s) for s in seed_list.replace(" ", "").split(",") if s]
            except ValueError:
                raise UserError(f"--seed-list {seed_list!r}: expected integers like 0,1,666") from None
        seeds_ = make_seeds(seeds, explicit)
        dataset, dataset_options = parse_dataset(dataset)
        layers = default_layers(config, set_ or [])
        cli_layer: dict = {"data": {"options": dataset_options}} if dataset_options else {}
        if variant is not None:
            cli_layer.setdefault("method", {})["variant"] = variant
        if epochs is not None:
            cli_layer.setdefault("train", {})["epochs"] = epochs
        if device is not None:
            cli_layer.setdefault("train", {})["device"] = device
        if out is not None:
            cli_layer.setdefault("tracking", {})["out_dir"] = str(out)
        if experiment is not None:
            cli_layer.setdefault("tracking", {})["experiment"] = experiment
        layers.append(cli_layer)
        reporter = RichReporter(console)
        with reporter:
            plan = plan_run(method, dataset, ratio, seeds_, layers, reporter.preparing)
            spec = plan.specs[0]
            tracker = open_tracker(spec.tracking.uri, spec.tracking.experiment)
            reporter.message(
                f"{spec.method.name} on {spec.data.name} {ratio:g}: "
                f"{len(plan.split.labeled)} labeled / {len(plan.split.unlabeled)} unlabeled,"
                f" seeds {', '.join(str(s.seed) for s in plan.specs)}"
            )
            parent = execute(plan, tracker, resume, reporter, after_seed=[log_run_figures])
        console.print(f"finished: MLflow parent run {parent} (experiment "
                      f"{spec.tracking.experiment!r}); see `dhcbench table` or `mlflow ui`")
    except UserError as exc:
        _fail(str(exc))
    except (RunInterrupted, KeyboardInterrupt) as exc:
        err_console.print(f"interrupted: {exc or 'KeyboardInterrupt'}; runs marked KILLED."
                          " Continue with the same command and --resume.")
        raise typer.Exit(130) from None


@app.command()
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
) -> None:
    """Paper-style table (mean±std over seeds) of the finished runs in MLflow."""
    from dhcbench.reports.cli_table import render_tables

    try:
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
        render_tables(console, experiment, dataset, ratio, metric, contract, checkpoint, fmt, out,
                      uri, with_paper, baseline, tail_k)
    except UserError as exc:
        _fail(str(exc))


@app.command()
def methods(
    details: Annotated[bool, typer.Option("--details", help="Describe every method: variants, defaults, λ, search space.")] = False,
) -> None:
    """List the registered methods with their family, networks and paper."""
    from rich.table import Table

    from dhcbench.methods import METHODS
    from dhcbench.reports.table import FAMILY_ORDER

    ordered = sorted(METHODS.items(), key=lambda kv: (FAMILY_ORDER.get(kv[1].family, 9), kv[0]))
    if details:
        for key, info in ordered:
            aliases = METHODS.aliases_of(key)
            console.print(f"[bold]{key}[/bold] — {info.title} ({info.family})"
                          f"{'  aliases: ' + ', '.join(aliases) if aliases else ''}")
            for label, value in (
                ("paper", info.paper), ("networks", info.networks),
                ("what", info.description), ("variants", ", ".join(info.variants)),
                ("data", info.data_mode), ("defaults", dict(info.defaults) or "none"),
                ("run-spec overrides", dict(info.train_overrides) or "none"),
                ("λ in the reference code", info.reference_lambda + ("" if info.reference_lambda == "not used" else "; dhcbench default 0.1")),
                ("search space", dict(info.search_space)),
            ):
                console.print(f"  {label}: {value}", markup=False, soft_wrap=True)
        return
    t = Table(title="methods", header_style="bold")
    for col in ("key", "family", "networks", "variants", "paper"):
        t.add_column(col)
    for key, info in ordered:
        t.add_row(key, info.family, info.networks, ", ".join(info.variants), info.paper)
    console.print(t)


@app.command()
def datasets() -> None:
    """List the registered datasets."""
    from rich.table import Table

    from dhcbench.datasets import DATASETS

    t = Table(title="datasets", header_style="bold")
    for col in ("key", "classes", "ratios", "description"):
        t.add_column(col)
    for key, source in DATASETS.items():
        t.add_row(key, source.classes_text, ", ".join(f"{r:g}" for r in source.ratios),
                  source.description)
    console.print(t)


@app.command()
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

    try:
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
    except UserError as exc:
        _fail(str(exc))


@app.command()
def plot(
    kind: Annotated[str, typer.Argument(help="weights, classes, slices or curves.")],
    run: Annotated[list[str], typer.Option("--run", help="MLflow seed-run id (repeat for several runs).")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG and PDF files.")] = Path("dhcbench-results/figures"),
    case: Annotated[str | None, typer.Option(help="slices: the test case (default: the first).")] = None,
    slices: Annotated[int, typer.Option(help="slices: how many axial slices.")] = 3,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "dhcbench",
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db).")] = None,
) -> None:
    """Figures of finished runs: class-weight trajectories, per-class Dice against class
    frequency, qualitative slices of several methods, and training curves."""
    from dhcbench.benchmark.tracking import open_tracker, require_store
    from dhcbench.reports.cli_plot import plot as make_plot

    try:
        if slices < 1:
            raise UserError(f"--slices {slices}: must be >= 1")
        require_store(uri)
        tracker = open_tracker(uri, experiment)
        paths = make_plot(tracker, kind, run, out, case, slices)
        console.print("written: " + ", ".join(str(p) for p in paths))
    except UserError as exc:
        _fail(str(exc))


@app.command()
def predict(
    run: Annotated[str, typer.Option(help="MLflow seed-run id whose best checkpoint segments the images.")],
    images: Annotated[Path, typer.Option(help="A NIfTI image or a folder of them (nnU-Net: <case>_0000.nii.gz …).")],
    out: Annotated[Path, typer.Option(help="Folder for <case>.nii.gz label maps on the source grid.")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda …")] = "auto",
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "dhcbench",
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Label maps for new images, resampled back to their grid with the source affine."""
    from dhcbench.benchmark.progress import RichReporter
    from dhcbench.benchmark.tracking import open_tracker, require_store
    from dhcbench.reports.predict import predict_images

    try:
        require_store(uri)
        tracker = open_tracker(uri, experiment)
        reporter = RichReporter(console)
        with reporter:
            paths = predict_images(tracker, run, images, out, device,
                                   reporter.progress_callback("predict"))
        console.print(f"{len(paths)} label map(s) written to {out}")
    except UserError as exc:
        _fail(str(exc))


@app.command()
def tune(
    method: Annotated[str, typer.Option("--method", "-m")] = "dhc",
    dataset: Annotated[str, typer.Option("--dataset", "-d")] = "phantom",
    ratio: Annotated[float, typer.Option("--ratio", "-r")] = 0.2,
    trials: Annotated[int, typer.Option(help="Trials to run in this process (added to the study).")] = 20,
    params: Annotated[str | None, typer.Option(help="Comma-separated subset of the method's space, e.g. beta,alpha,tau,lr,lambda.")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (default sqlite:///optuna.db; postgresql://… to share a study).")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default <method>-<dataset>-<ratio>).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Shortcut for --set train.epochs=N.")] = None,
    seed: Annotated[int, typer.Option(help="Training seed of every trial.")] = 0,
    sampler_seed: Annotated[int | None, typer.Option(help="TPE sampler seed (default: --seed); give each process sharing a study its own.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of setting overrides.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override one setting (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the best-parameters YAML.")] = Path("."),
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "dhcbench-tune",
) -> None:
    """Optuna study (TPE, median pruning) of a method's hyper-parameters on the eval split."""
    from dhcbench.benchmark.progress import RichReporter
    from dhcbench.benchmark.runner import default_layers
    from dhcbench.benchmark.tracking import open_tracker
    from dhcbench.benchmark.tuning import tune as run_tune
    from dhcbench.reports.run_figures import log_run_figures

    try:
        name, options = parse_dataset(dataset)
        layers = default_layers(config, set_ or [])
        cli_layer: dict = {"data": {"options": options}} if options else {}
        if epochs is not None:
            cli_layer["train"] = {"epochs": epochs}
        layers.append(cli_layer)
        tracker = open_tracker(None, experiment)
        reporter = RichReporter(console)
        with reporter:
            result = run_tune(method, name, ratio, trials, tracker, layers,
                              [p.strip() for p in params.split(",")] if params else None,
                              storage, study, seed, out, reporter, sampler_seed,
                              after_seed=[log_run_figures])
        console.print(f"study {result.study}: {result.trials} trial(s); best eval Dice"
                      f" {result.best_value:.2f} % with {result.best_params};"
                      f" written {result.config_path} (use: dhcbench run --config"
                      f" {result.config_path} …)")
    except UserError as exc:
        _fail(str(exc))


@app.command()
def sweep(
    suite: Annotated[str, typer.Argument(help="A suite TOML file or a shipped suite name (phantom, synapse-20p, …).")],
    executor: Annotated[str, typer.Option(help="local (here, one run after another) or slurm (a submitit job array).")] = "local",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and its counts; run nothing.")] = False,
    partition: Annotated[str | None, typer.Option(help="slurm: partition.")] = None,
    time: Annotated[int, typer.Option(help="slurm: time limit per task, minutes.")] = 24 * 60,
    max_parallel: Annotated[int, typer.Option(help="slurm: array tasks running at once.")] = 8,
    cpus_per_task: Annotated[int, typer.Option(help="slurm: CPU cores per task.")] = 8,
    workers: Annotated[int | None, typer.Option(help="local: worker processes (default: one per visible GPU; on a CPU two, sharing the cores).")] = None,
    logs: Annotated[Path, typer.Option(help="slurm: folder for submitit's logs and pickles.")] = Path("dhcbench-runs/submitit"),
    show_table: Annotated[bool, typer.Option("--table", help="local: print the suite's table when it is done (as `dhcbench table`).")] = False,
) -> None:
    """Run a whole suite: finished runs are skipped, interrupted ones resumed."""
    from dhcbench.benchmark.progress import RichReporter
    from dhcbench.benchmark.runner import RunInterrupted
    from dhcbench.benchmark.sweep import job_states, load_suite, run_job, run_local, submit
    from dhcbench.benchmark.tracking import open_tracker
    from dhcbench.reports.run_figures import log_run_figures

    try:
        if executor not in ("local", "slurm"):
            raise UserError(f"--executor {executor!r}: use local or slurm")
        if workers is not None and workers < 1:
            raise UserError(f"--workers {workers}: needs at least 1")
        plan = load_suite(suite)
        tracker = open_tracker(None, plan.experiment)
        tracker.reap_stale()
        states = job_states(tracker, plan.jobs)
        counts = {k: sum(1 for v in states.values() if v == k) for k in ("done", "resume", "new")}
        console.print(f"suite {plan.name} ({plan.source}): {len(plan.jobs)} runs —"
                      f" {counts['done']} done, {counts['resume']} to resume, {counts['new']} new;"
                      f" experiment {plan.experiment!r}")
        todo = [j for j in plan.jobs if states[j.key] != "done"]
        if dry_run:
            for job in plan.jobs:
                console.print(f"  {states[job.key]:6s} {job.label}  key {job.key}", markup=False)
            return
        if executor == "slurm":
            jobs = submit(todo, None, logs, "slurm", partition, time, max_parallel, cpus_per_task,
                          after_seed=[log_run_figures])
            console.print(f"submitted {len(jobs)} array task(s): {', '.join(j.job_id for j in jobs[:5])}"
                          f"{' …' if len(jobs) > 5 else ''}; logs in {logs}")
            return
        with RichReporter(console) as reporter:
            bar = reporter.progress_callback(f"suite {plan.name}")
            bar(0, len(todo))
            finished = [0]

            def on_job(job: Any, result: str) -> None:
                finished[0] += 1
                reporter.progress.console.print(f"{job.label}: {result}", markup=False)
                bar(finished[0], len(todo))

            run_local(todo, None, on_job, workers=workers,
                      task=functools.partial(run_job, after_seed=(log_run_figures,)))
        console.print(f"suite {plan.name}: {len(todo)} run(s) done; see `dhcbench table --experiment {plan.experiment}`")
        if show_table:
            from dhcbench.reports.cli_table import render_tables

            # One process for the runs and the table: no second start-up of the libraries.
            names = {j.dataset for j in plan.jobs}
            ratios = {j.ratio for j in plan.jobs}
            render_tables(console, plan.experiment, names.pop() if len(names) == 1 else None,
                          ratios.pop() if len(ratios) == 1 else None, "dice", "dhc", "best",
                          None, Path("dhcbench-results"))
    except UserError as exc:
        _fail(str(exc))
    except (RunInterrupted, KeyboardInterrupt) as exc:
        err_console.print(f"interrupted: {exc or 'KeyboardInterrupt'}; queued runs cancelled,"
                          " running ones marked KILLED. Run the same sweep again to resume.")
        raise typer.Exit(130) from None


@app.command()
def bench(
    methods_: Annotated[str, typer.Option("--methods", help="Comma-separated method keys, or 'paper' (the paper's methods) or 'all'.")] = "paper",
    dataset: Annotated[str, typer.Option("--dataset", "-d")] = "phantom",
    ratio: Annotated[float, typer.Option("--ratio", "-r")] = 0.2,
    steps: Annotated[int, typer.Option(help="Timed steps per method.")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed steps first.")] = 2,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Setting overrides, as for run.")] = None,
) -> None:
    """Time one training step of each method (median of --steps) on the dataset's patches."""
    from rich.table import Table

    from dhcbench.benchmark.bench import bench_methods
    from dhcbench.benchmark.runner import default_layers
    from dhcbench.methods import METHODS

    paper = ["fully", "labeled-only", "uamt", "urpc", "cps", "ssnet", "dst", "depl", "adsh",
             "crest", "simis", "basak", "cld", "dhc"]
    try:
        if steps < 1 or warmup < 0:
            raise UserError("--steps must be >= 1 and --warmup >= 0")
        names = (paper if methods_ == "paper" else list(METHODS) if methods_ == "all"
                 else [METHODS.canonical(m) for m in methods_.split(",") if m.strip()])
        layers = default_layers(None, set_ or [])
        t = Table(title=f"training step on {dataset} (median of {steps})", header_style="bold")
        for col in ("method", "median s/step", "min s/step", "peak MB"):
            t.add_column(col, justify="right" if col != "method" else "left")

        def show(r) -> None:  # noqa: ANN001
            console.print(f"{r.method}: {r.median_s:.3f} s/step (min {r.min_s:.3f}),"
                          f" peak {r.peak_mb:.0f} MB")
            t.add_row(r.method, f"{r.median_s:.3f}", f"{r.min_s:.3f}", f"{r.peak_mb:.0f}")

        bench_methods(names, dataset, ratio, layers, steps, warmup, show)
        console.print(t)
    except UserError as exc:
        _fail(str(exc))


@app.command()
def prepare(
    layout: Annotated[str, typer.Argument(help="synapse, amos, nnunet or dhc-npy.")],
    src: Annotated[Path, typer.Option(help="The downloaded dataset folder.")],
    out: Annotated[Path | None, typer.Option(help="Data root (default $DHCBENCH_DATA or ./dhcbench-data).")] = None,
    profile: Annotated[str | None, typer.Option(help="dhc2023 (80×160×160, the paper's), dhc2024 (the reference at HEAD) or native. Default: dhc2023, native for nnunet.")] = None,
    spacing: Annotated[str | None, typer.Option(help="native profile: resample to this voxel size in mm, z,y,x.")] = None,
    mri_normalization: Annotated[str, typer.Option(help="MRI cases: window (the reference's CT window) or zscore.")] = "window",
    task: Annotated[str | None, typer.Option(help="dhc-npy only: synapse or amos.")] = None,
) -> None:
    """Import a downloaded dataset into the prepared layout (once; runs then load it)."""
    from dhcbench.benchmark.progress import RichReporter
    from dhcbench.datasets.base import data_root
    from dhcbench.datasets.importers import prepare as do_prepare

    try:
        spacing_mm = None
        if spacing:
            try:
                spacing_mm = tuple(float(v) for v in spacing.split(","))
            except ValueError:
                raise UserError(f"--spacing {spacing!r}: expected three numbers z,y,x") from None
            if len(spacing_mm) != 3 or min(spacing_mm) <= 0:
                raise UserError(f"--spacing {spacing!r}: expected three positive numbers z,y,x")
        chosen = profile or ("native" if layout == "nnunet" else "dhc2023")
        reporter = RichReporter(console)
        with reporter:
            ds = do_prepare(layout, src, out or data_root(), chosen, spacing_mm,  # type: ignore[arg-type]
                            mri_normalization, task, reporter.progress_callback(f"prepare {layout}"))
        shapes = sorted({rec.shape for rec in ds.cases.values()})
        console.print(f"prepared {len(ds.cases)} cases of {ds.name} ({ds.num_classes - 1} classes,"
                      f" profile {ds.profile}) into {ds.path}; shapes {shapes[:3]}"
                      f"{' …' if len(shapes) > 3 else ''}")
    except UserError as exc:
        _fail(str(exc))


splits_app = typer.Typer(help="Show and verify split manifests.", no_args_is_help=True)
app.add_typer(splits_app, name="splits")


@splits_app.command("show")
def splits_show(
    name: Annotated[str, typer.Argument(help="synapse:dhc2023, synapse:dhc2024, amos:dhc, or a dataset (phantom, nnunet:<name>).")],
    ratio: Annotated[float | None, typer.Option(help="One labeled ratio (default: all shipped).")] = None,
    split_seed: Annotated[int, typer.Option(help="0: shipped lists; other: seeded draw.")] = 0,
    profile: Annotated[str | None, typer.Option(help="Profile of the prepared data to count classes in.")] = None,
    ids: Annotated[bool, typer.Option("--ids/--no-ids", help="Print every id.")] = True,
    data: Annotated[Path | None, typer.Option(help="Data root (default $DHCBENCH_DATA or ./dhcbench-data).")] = None,
) -> None:
    """Print a split: its lists, SHA-256 and the labeled set's per-class voxel counts."""
    from dhcbench.datasets.split_report import show

    try:
        options = {"profile": profile} if profile else {}
        for view in show(name, ratio, split_seed, options, data):
            console.print(f"[bold]{view.title}[/bold]  sha256 {view.sha256}")
            for note in view.notes:
                console.print(f"  {note}", markup=False)
            for key, values in view.lists.items():
                text = " ".join(values) if ids else ""
                console.print(f"  {key} ({len(values)}): {text}", markup=False, soft_wrap=True)
            if view.class_counts is not None:
                counts = ", ".join(f"{k} {v}" for k, v in view.class_counts.items())
                console.print(f"  labeled voxels per class: {counts}", markup=False,
                              soft_wrap=True)
    except UserError as exc:
        _fail(str(exc))


@splits_app.command("verify")
def splits_verify(
    name: Annotated[str, typer.Argument(help="A manifest name or a dataset.")],
    profile: Annotated[str | None, typer.Option(help="Profile of the prepared data to check ids in.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data root (default $DHCBENCH_DATA or ./dhcbench-data).")] = None,
) -> None:
    """Check a split: disjoint lists, labeled inside train, ids present in the data."""
    from dhcbench.datasets.split_report import verify

    try:
        for line in verify(name, options={"profile": profile} if profile else {}, root=data):
            console.print(f"ok: {line}", markup=False, soft_wrap=True)
    except UserError as exc:
        _fail(str(exc))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except UserError as exc:  # raised outside a command's own handler
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
