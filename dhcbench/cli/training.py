"""Commands that train: ``run``, ``tune``, ``sweep`` and ``bench``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from dhcbench.cli.common import (
    app,
    check_out_folder,
    console,
    interrupted,
    parse_dataset,
    user_errors,
    variant_help,
)
from dhcbench.cli.store import check_writable_store, existing_tracker, open_store
from dhcbench.errors import UserError


@app.command()
@user_errors
def run(
    method: Annotated[str, typer.Option("--method", "-m", help="Method key (see `dhcbench methods`).")] = "dhc",
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset key (see `dhcbench datasets`).")] = "phantom",
    ratio: Annotated[float, typer.Option("--ratio", "-r", help="Labeled fraction of the training cases, e.g. 0.2.")] = 0.2,
    seeds: Annotated[int, typer.Option(help="Number of seeds: the paper's 0, 1, 666 first.")] = 1,
    seed_list: Annotated[str | None, typer.Option("--seed-list", help="Explicit seeds, e.g. 0,1,666.")] = None,
    variant: Annotated[str | None, typer.Option(help=variant_help())] = None,
    epochs: Annotated[int | None, typer.Option(help="Shortcut for --set train.epochs=N.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1 …")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of setting overrides.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override one setting, e.g. train.lr=0.01 (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for checkpoints (default ./dhcbench-runs).")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name (default dhcbench).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the latest unfinished run of this configuration.")] = False,
) -> None:
    """Train and test a method on a dataset for one or more seeds, tracked in MLflow."""
    from dhcbench.benchmark.planning import default_layers, plan_run
    from dhcbench.benchmark.planning import seed_list as make_seeds
    from dhcbench.benchmark.progress import RichReporter, run_header
    from dhcbench.benchmark.runner import RunInterrupted, execute
    from dhcbench.reports.run_figures import log_parent_figures, log_run_figures

    try:
        explicit = None
        if seed_list:
            try:
                explicit = [int(s) for s in seed_list.replace(" ", "").split(",") if s]
            except ValueError:
                raise UserError(f"--seed-list {seed_list!r}: expected integers like 0,1,666") from None
            if not explicit:
                raise UserError(f"--seed-list {seed_list!r}: expected integers like 0,1,666")
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
            # Every input is checked; only now is the store opened (or created).
            tracker = open_store(spec.tracking.uri, spec.tracking.experiment)
            reporter.message(run_header(plan, ratio))
            parent = execute(plan, tracker, resume, reporter, after_seed=[log_run_figures],
                             after_parent=[log_parent_figures])
        _print_summary(tracker, parent, spec.tracking.experiment, spec.data.name, ratio)
    except (RunInterrupted, KeyboardInterrupt) as exc:
        interrupted(exc, "runs marked KILLED. Continue with the same command and --resume.")


def _print_summary(tracker: Any, parent: str, experiment: str, dataset: str,
                   ratio: float) -> None:
    """The end of ``run``: each seed's test Dice and tail-class Dice, then the next commands."""
    from dhcbench.reports.run_summary import next_commands, seed_lines, summary_table

    lines, tail = seed_lines(tracker, parent)
    console.print(f"finished: MLflow parent run {parent} (experiment {experiment!r})")
    console.print(summary_table(lines, tail))
    console.print("next:")
    for command in next_commands(lines, experiment, dataset, ratio):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@user_errors
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
    from dhcbench.benchmark.planning import default_layers
    from dhcbench.benchmark.progress import RichReporter
    from dhcbench.benchmark.spec import check_seed
    from dhcbench.benchmark.tuning import check_storage, search_space
    from dhcbench.benchmark.tuning import tune as run_tune
    from dhcbench.reports.run_figures import log_run_figures

    # Every option is checked before the Optuna storage or the MLflow store is touched.
    if trials < 1:
        raise UserError(f"--trials {trials}: need at least one trial")
    check_seed(seed, "--seed")
    if sampler_seed is not None:
        check_seed(sampler_seed, "--sampler-seed")
    if study is not None and not study.strip():
        raise UserError("--study: the study name must not be empty")
    if not experiment.strip():
        raise UserError("--experiment: the experiment name must not be empty")
    param_list = [p.strip() for p in params.split(",")] if params is not None else None
    if param_list is not None and not all(param_list):
        raise UserError(f"--params {params!r}: expected names like beta,alpha,tau,lr,lambda")
    search_space(method, param_list)
    check_storage(storage)
    check_out_folder(out, "--out", exists=True)
    name, options = parse_dataset(dataset)
    layers = default_layers(config, set_ or [])
    cli_layer: dict = {"data": {"options": options}} if options else {}
    if epochs is not None:
        cli_layer["train"] = {"epochs": epochs}
    layers.append(cli_layer)
    check_writable_store(None)
    reporter = RichReporter(console)
    with reporter:
        result = run_tune(method, name, ratio, trials,
                          functools.partial(open_store, None, experiment), layers,
                          param_list, storage, study, seed, out, reporter, sampler_seed,
                          after_seed=[log_run_figures])
    console.print(f"study {result.study}: {result.trials} trial(s); best eval Dice"
                  f" {result.best_value:.2f} % with {result.best_params};"
                  f" written {result.config_path} (use: dhcbench run --config"
                  f" {result.config_path} …)")


@app.command()
@user_errors
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
    from dhcbench.reports.run_figures import log_run_figures

    try:
        _check_sweep_options(executor, workers, time, max_parallel, cpus_per_task, partition)
        plan = load_suite(suite)
        if dry_run:  # a dry run reads the store if there is one, and creates nothing
            tracker = existing_tracker(None, plan.experiment)
            states = (job_states(tracker, plan.jobs) if tracker is not None
                      else {j.key: "new" for j in plan.jobs})
        else:
            if executor == "slurm":
                check_out_folder(logs, "--logs")
            if show_table:
                check_out_folder(Path("dhcbench-results"), "--table")
            tracker = open_store(None, plan.experiment)
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
    except (RunInterrupted, KeyboardInterrupt) as exc:
        interrupted(exc, "queued runs cancelled, running ones marked KILLED. Run the same"
                         " sweep again to resume.")


def _check_sweep_options(executor: str, workers: int | None, time: int, max_parallel: int,
                         cpus_per_task: int, partition: str | None) -> None:
    """The ``sweep`` options checked before the suite is read; a UserError names the first bad one."""
    if executor not in ("local", "slurm"):
        raise UserError(f"--executor {executor!r}: use local or slurm")
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: needs at least 1")
    for option, value in (("--time", time), ("--max-parallel", max_parallel),
                          ("--cpus-per-task", cpus_per_task)):
        if value < 1:
            raise UserError(f"{option} {value}: needs at least 1")
    if partition is not None and not partition.strip():
        raise UserError("--partition: the partition name must not be empty")


@app.command()
@user_errors
def bench(
    methods_: Annotated[str, typer.Option("--methods", help="Comma-separated method keys, or 'paper' (the paper's methods) or 'all'.")] = "paper",
    dataset: Annotated[str, typer.Option("--dataset", "-d")] = "phantom",
    ratio: Annotated[float, typer.Option("--ratio", "-r")] = 0.2,
    part: Annotated[str, typer.Option(help="step (each method against its model floor), data (a patch fetch), infer (one volume's sliding-window inference) or eval (one case's metrics against medpy).")] = "step",
    rounds: Annotated[int, typer.Option(help="Alternating rounds; the median ratio and its spread are taken over them.")] = 5,
    steps: Annotated[int, typer.Option(help="step: timed method steps, then as many floor steps, per round.")] = 3,
    warmup: Annotated[int, typer.Option(help="step: untimed steps of each side first.")] = 2,
    grid: Annotated[list[str] | None, typer.Option(help="data/infer/eval: volume grid D,H,W, or synapse (147,256,256) / amos (80,160,160); repeatable. Default: data synapse, infer amos, eval both.")] = None,
    patch: Annotated[str | None, typer.Option(help="data/infer: patch D,H,W (default 64,128,128).")] = None,
    filters: Annotated[int, typer.Option(help="infer: V-Net base filters.")] = 16,
    device: Annotated[str, typer.Option(help="infer: auto, cpu, cuda …")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (step: train.threads wins).")] = None,
    json_: Annotated[Path | None, typer.Option("--json", help="Write the results to this JSON file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="step: setting overrides, as for run.")] = None,
) -> None:
    """Time each method's step against its model floor, or a data, inference or metrics part."""
    from dhcbench.benchmark import bench_report as report

    if part not in report.PARTS:
        raise UserError(f"--part {part!r}: use one of {', '.join(report.PARTS)}")
    if steps < 1 or warmup < 0 or rounds < 1:
        raise UserError("--steps and --rounds must be >= 1 and --warmup >= 0")
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    if part != "step":
        results, t = report.run_part(part, grid or [], patch, filters, rounds, device)
    else:
        from dhcbench.benchmark.bench import bench_methods
        from dhcbench.benchmark.planning import default_layers

        names = report.method_names(methods_)
        layers = default_layers(None, set_ or [])
        t = report.step_table(dataset, steps, rounds)

        def show(r) -> None:  # noqa: ANN001
            console.print(report.step_line(r))
            report.add_step_row(t, r)

        results = bench_methods(names, dataset, ratio, layers, steps, warmup, show, rounds)
    console.print(t)
    if json_ is not None:
        report.write_json(json_, part, results)
        console.print(f"results written to {json_}")
