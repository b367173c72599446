"""``dhcbench sweep SUITE``: a whole benchmark (methods × datasets × ratios × seeds) as one
resumable plan, run here or on a SLURM cluster through submitit.

A suite is a TOML file (or the name of a shipped one)::

    name = "synapse-20p"
    experiment = "dhcbench"          # MLflow experiment (optional)
    [defaults]                       # settings for every run, as --set keys
    "train.epochs" = 300
    [[group]]
    methods = ["cps", "dhc"]
    datasets = ["synapse"]
    ratios = [0.2]
    seeds = [0, 1, 666]
    [group.set]                      # settings for this group only
    "train.lr" = 0.03

Each (method, dataset, ratio, seed) is a job whose key is the hash of its resolved spec and
the package version (``spec_key(spec, with_seed=True)``, the ``dhcbench.seed_key`` tag of its
MLflow run): a job whose run FINISHED is skipped, an unfinished one is resumed from its
checkpoint, the rest start fresh — so running a suite twice trains each run once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import product
from pathlib import Path
from typing import Any

from dhcbench.benchmark.planning import plan_run, resolve_specs
from dhcbench.benchmark.runner import Reporter, RunInterrupted, SeedHook, execute
from dhcbench.benchmark.spec import deep_merge, dotted_layer, spec_key
from dhcbench.benchmark.tracking import ROLE, SEED_KEY, Tracker, open_tracker
from dhcbench.errors import UserError

SUITE_KEYS = {"name", "experiment", "defaults", "group", "description"}
GROUP_KEYS = {"methods", "datasets", "ratios", "seeds", "set"}


@dataclass(frozen=True)
class Job:
    """One seed of one (method, dataset, ratio) with its override layers."""

    method: str
    dataset: str
    ratio: float
    seed: int
    layers: tuple[Mapping[str, Any], ...]
    key: str = ""

    @property
    def label(self) -> str:
        return f"{self.method}-{self.dataset}-{self.ratio:g}-seed{self.seed}"


@dataclass
class Suite:
    name: str
    experiment: str
    jobs: list[Job] = field(default_factory=list)
    source: str = ""


def shipped_suites() -> list[str]:
    """Names of the suites shipped with the package."""
    folder = resources.files("dhcbench.data").joinpath("suites")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _layer(settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``{"train.lr": 0.01}`` (dotted keys, typed TOML values) -> a nested override layer."""
    layer: dict[str, Any] = {}
    for key, value in settings.items():
        layer = deep_merge(layer, dotted_layer(key, value, where))
    return layer


def load_suite(ref: str) -> Suite:
    """Parse a suite file (or shipped suite name) into jobs; every spec is validated."""
    path = Path(ref)
    if path.is_file():
        text, source = path.read_text(), str(path)
    elif ref in shipped_suites():
        source = f"shipped suite {ref}"
        text = resources.files("dhcbench.data").joinpath("suites", f"{ref}.toml").read_text()
    else:
        raise UserError(f"{ref}: no such suite file nor shipped suite"
                        f" (shipped: {', '.join(shipped_suites())})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source}: not valid TOML ({exc})") from exc
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r}"
                        f" (valid: {', '.join(sorted(SUITE_KEYS))})")
    groups = data.get("group", [])
    if not groups:
        raise UserError(f"{source}: no [[group]] of runs")
    defaults = _layer(data.get("defaults", {}), f"{source} [defaults]")
    suite = Suite(str(data.get("name", path.stem)), str(data.get("experiment", "dhcbench")),
                  source=source)
    for i, group in enumerate(groups):
        where = f"{source} group {i + 1}"
        unknown = sorted(set(group) - GROUP_KEYS)
        if unknown:
            raise UserError(f"{where}: unknown key {unknown[0]!r}"
                            f" (valid: {', '.join(sorted(GROUP_KEYS))})")
        missing = [k for k in ("methods", "datasets", "ratios", "seeds") if k not in group]
        if missing:
            raise UserError(f"{where}: missing {missing[0]!r}")
        layers = (defaults, _layer(group.get("set", {}), where),
                  {"tracking": {"experiment": suite.experiment}})
        for method, dataset, ratio, seed in product(group["methods"], group["datasets"],
                                                    group["ratios"], group["seeds"]):
            (spec,) = resolve_specs(str(method), str(dataset), float(ratio), [int(seed)],
                                    list(layers))
            suite.jobs.append(Job(spec.method.name, str(dataset), float(ratio), int(seed),
                                  layers, spec_key(spec, with_seed=True)))
    return suite


def job_states(tracker: Tracker, jobs: Sequence[Job]) -> dict[str, str]:
    """``done`` (a FINISHED run has the job's key), ``resume`` (an unfinished one) or
    ``new`` for every job key."""
    states = {j.key: "new" for j in jobs}
    for run in tracker.search(f"tags.`{ROLE}` = 'seed'"):
        key = run.data.tags.get(SEED_KEY)
        if key in states:
            status = "done" if run.info.status == "FINISHED" else "resume"
            if states[key] != "done":
                states[key] = status
    return states


def _create_stores(jobs: Iterable[Job], uri: str) -> None:
    """Create the store and every job's experiment here, before parallel workers open them."""
    for experiment in dict.fromkeys(j.layers[-1]["tracking"]["experiment"] for j in jobs):
        open_tracker(uri, experiment)


def run_job(job: Job, uri: str | None = None, after_seed: Sequence[SeedHook] = ()) -> str:
    """Train one job (resuming it when it has an unfinished run); returns its final state.
    Top-level and picklable: this is what a SLURM array task executes. ``after_seed``: the
    runner's seed hooks (top-level functions, so that they pickle)."""
    experiment = job.layers[-1]["tracking"]["experiment"]
    tracker = open_tracker(uri, experiment)
    if job_states(tracker, [job])[job.key] == "done":
        return "skipped"
    plan = plan_run(job.method, job.dataset, job.ratio, [job.seed], list(job.layers))
    execute(plan, tracker, resume=True, report=Reporter(), after_seed=after_seed)
    return "trained"


#: Set in a worker process once one of its jobs was interrupted.
_WORKER_STOPPED = False


def _guarded(task: Callable[[Job, str | None], str], job: Job, uri: str | None) -> str:
    """Runs one job in a worker. Once a job of this worker was interrupted (the trainer
    turns SIGTERM into a saved, KILLED run), the jobs already handed to the worker are
    skipped: the pool passes each worker a job ahead, which cancelling the futures cannot
    recall, and that job would otherwise train to the end while the sweep waits for it."""
    global _WORKER_STOPPED
    if _WORKER_STOPPED:
        return "cancelled"
    try:
        return task(job, uri)
    except (RunInterrupted, KeyboardInterrupt):
        _WORKER_STOPPED = True
        raise


def _pin_worker(queue: Any) -> None:
    """Worker initializer: take one slot (a GPU index, or a CPU thread count) from the queue."""
    kind, value = queue.get()
    if kind == "gpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = str(value)
    else:
        import torch

        torch.set_num_threads(int(value))


def visible_gpus() -> list[str]:
    """The GPU indices this process may use (``CUDA_VISIBLE_DEVICES`` or all)."""
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [g for g in listed.split(",") if g.strip()][:count]
    return [str(i) for i in range(count)]


def cpu_workers(cores: int | None = None) -> int:
    """Default number of CPU worker processes: two where there are at least two cores.

    Measured on a 2-core CPU (phantom, F=8): two single-threaded processes train
    about 1.3 times as many steps per second together as one process on two threads,
    since the small 3D convolutions of a CPU-sized V-Net do not scale across threads."""
    cores = cores or os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def worker_slots(workers: int | None, gpus: Sequence[str],
                 cores: int | None = None) -> list[tuple[str, Any]]:
    """One slot per worker process: a GPU each where GPUs are visible, else a share of the
    CPU cores (``cores // workers`` threads each)."""
    if gpus:
        n = len(gpus) if workers is None else max(1, min(workers, len(gpus)))
        return [("gpu", g) for g in gpus[:n]]
    cores = cores or os.cpu_count() or 1
    n = cpu_workers(cores) if workers is None else max(1, workers)
    return [("cpu", max(1, cores // n))] * n


def run_local(jobs: Iterable[Job], uri: str | None,
              on_job: Callable[[Job, str], None] | None = None,
              gpus: Sequence[str] | None = None, workers: int | None = None,
              task: Callable[[Job, str | None], str] = run_job) -> list[str]:
    """Run the jobs here with one worker process per slot (:func:`worker_slots`): one per
    GPU (``CUDA_VISIBLE_DEVICES`` pinned per worker), or on a CPU ``workers`` processes
    sharing the cores; each worker takes the next job. One slot runs in this process.

    A job that fails or is interrupted (Ctrl-C reaches the workers too: each saves its run
    and marks it KILLED) stops the sweep: jobs not yet started are cancelled, so a second
    ``dhcbench sweep`` resumes where this one stopped. ``task`` is what runs a job
    (:func:`run_job`; top-level and picklable)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    jobs = list(jobs)
    gpus = visible_gpus() if gpus is None else list(gpus)
    slots = worker_slots(workers, gpus)
    results: list[str] = []
    if len(slots) <= 1 or len(jobs) <= 1:
        for job in jobs:
            result = task(job, uri)
            results.append(result)
            if on_job is not None:
                on_job(job, result)
        return results
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"
    _create_stores(jobs, uri)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    for slot in slots:
        queue.put(slot)
    pool = ProcessPoolExecutor(len(slots), mp_context=ctx, initializer=_pin_worker,
                               initargs=(queue,))
    with _sigterm_as_interrupt():
        try:
            futures = {pool.submit(_guarded, task, job, uri): job for job in jobs}
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                if on_job is not None:
                    on_job(futures[future], result)
        except KeyboardInterrupt:
            # Ctrl-C reaches the workers by itself; a SIGTERM sent to this process alone
            # is passed on, so that every running run saves its state and closes as KILLED.
            for process in list(getattr(pool, "_processes", {}).values()):
                if process.is_alive():
                    process.terminate()
            raise
        finally:
            # On an error or an interrupt the queued jobs must not start: cancel them, then
            # wait for the running ones to close their runs.
            pool.shutdown(wait=True, cancel_futures=True)
    return results


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in this (main) thread, so that a
    killed sweep stops its workers instead of leaving them to run the queued jobs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        del signum, frame
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def submit(jobs: Sequence[Job], uri: str | None, folder: Path, cluster: str = "slurm",
           partition: str | None = None, time_min: int = 24 * 60, max_parallel: int = 8,
           cpus_per_task: int = 8, wait: bool = False,
           after_seed: Sequence[SeedHook] = ()) -> list[Any]:
    """Submit the jobs as one submitit job array (one GPU per task on SLURM)."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": time_min, "name": "dhcbench",
                              "slurm_array_parallelism": max_parallel}
    if cluster == "slurm":
        params.update(gpus_per_node=1, tasks_per_node=1, cpus_per_task=cpus_per_task)
        if partition:
            params["slurm_partition"] = partition
    executor.update_parameters(**params)
    uri = (uri or os.environ.get("MLFLOW_TRACKING_URI")
           or f"sqlite:///{Path('mlflow.db').resolve()}")
    _create_stores(jobs, uri)
    submitted = executor.map_array(functools.partial(run_job, after_seed=tuple(after_seed)),
                                   list(jobs), [uri] * len(jobs))
    if wait:
        for job in submitted:
            job.result()
    return submitted
