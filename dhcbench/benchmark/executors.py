"""Executors of sweep jobs: worker processes on this machine, or a submitit job array.

:func:`run_local` runs the jobs here with one worker process per slot (a GPU each, or a
share of the CPU cores); :func:`submit` hands them to SLURM (or submitit's local executor)
as one job array. Both run :func:`dhcbench.benchmark.jobs.run_job` for every job, and both
create the tracking store before any worker opens it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dhcbench.benchmark.jobs import Job, run_job
from dhcbench.benchmark.runner import RunInterrupted, SeedHook
from dhcbench.benchmark.tracking import open_tracker


def _shared_store(jobs: Iterable[Job], uri: str | None) -> str:
    """The store URI every worker opens, with the store and each job's experiment created.

    Without ``uri``: ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in this folder as an absolute
    ``sqlite:///`` URI (workers may run elsewhere). Creating the store and the experiments
    here, before parallel workers open them, keeps them from racing to do it.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"
    for experiment in dict.fromkeys(j.experiment for j in jobs):
        open_tracker(uri, experiment)
    return uri


# -- this machine ----------------------------------------------------------------------------

#: Set in a worker process once one of its jobs was interrupted.
_WORKER_STOPPED = False


def _guarded(task: Callable[[Job, str | None], str], job: Job, uri: str | None) -> str:
    """Run one job in a worker, unless an earlier job of this worker was interrupted.

    Once a job of this worker was interrupted (the trainer turns SIGTERM into a saved, KILLED
    run), the jobs already handed to the worker are skipped: the pool passes each worker a
    job ahead, which cancelling the futures cannot recall, and that job would otherwise train
    to the end while the sweep waits for it.
    """
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
    """The GPU indices this process may use (``CUDA_VISIBLE_DEVICES`` or all).

    The indices are strings as ``CUDA_VISIBLE_DEVICES`` lists them, at most as many as torch
    sees; an empty list on a machine without CUDA.
    """
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
    since the small 3D convolutions of a CPU-sized V-Net do not scale across threads.
    ``cores`` None counts this machine's.
    """
    cores = cores or os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def worker_slots(workers: int | None, gpus: Sequence[str],
                 cores: int | None = None) -> list[tuple[str, Any]]:
    """One slot per worker process: ``("gpu", index)`` or ``("cpu", threads)``.

    A GPU each where GPUs are visible (at most ``workers`` of them), else a share of the CPU
    cores: ``cores // workers`` threads each, ``workers`` None being :func:`cpu_workers`.
    """
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
    """Run the jobs here with one worker process per slot (:func:`worker_slots`).

    One worker per GPU (``CUDA_VISIBLE_DEVICES`` pinned per worker), or on a CPU ``workers``
    processes sharing the cores; each worker takes the next job. One slot runs in this
    process. ``on_job`` is told each job's result as it ends; the results come back in the
    order the jobs ended.

    A job that fails or is interrupted (Ctrl-C reaches the workers too: each saves its run
    and marks it KILLED) stops the sweep: jobs not yet started are cancelled, so a second
    ``dhcbench sweep`` resumes where this one stopped. ``task`` is what runs a job
    (:func:`run_job`; top-level and picklable).
    """
    jobs = list(jobs)
    gpus = visible_gpus() if gpus is None else list(gpus)
    slots = worker_slots(workers, gpus)
    if len(slots) <= 1 or len(jobs) <= 1:
        results: list[str] = []
        for job in jobs:
            result = task(job, uri)
            results.append(result)
            if on_job is not None:
                on_job(job, result)
        return results
    return _run_pool(jobs, _shared_store(jobs, uri), slots, on_job, task)


def _run_pool(jobs: list[Job], uri: str, slots: list[tuple[str, Any]],
              on_job: Callable[[Job, str], None] | None,
              task: Callable[[Job, str | None], str]) -> list[str]:
    """Run the jobs on a pool of spawned worker processes, one per slot."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: list[str] = []
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
    """Within the block, SIGTERM raises KeyboardInterrupt in this (main) thread.

    So a killed sweep stops its workers instead of leaving them to run the queued jobs.
    Outside the main thread, where signal handlers cannot be set, the block runs unchanged.
    """
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


# -- a cluster --------------------------------------------------------------------------------


def submit(jobs: Sequence[Job], uri: str | None, folder: Path, cluster: str = "slurm",
           partition: str | None = None, time_min: int = 24 * 60, max_parallel: int = 8,
           cpus_per_task: int = 8, wait: bool = False,
           after_seed: Sequence[SeedHook] = ()) -> list[Any]:
    """Submit the jobs as one submitit job array (one GPU per task on SLURM).

    ``folder`` holds submitit's logs and pickles; ``time_min`` is each task's time limit in
    minutes; at most ``max_parallel`` tasks run at once. ``cluster`` is a submitit cluster
    name (``slurm``, or ``local``/``debug`` to try a suite out). With ``wait`` the call
    waits for the tasks in submission order and raises the first error it meets. Returns
    submitit's job handles.
    """
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": time_min, "name": "dhcbench",
                              "slurm_array_parallelism": max_parallel}
    if cluster == "slurm":
        params.update(gpus_per_node=1, tasks_per_node=1, cpus_per_task=cpus_per_task)
        if partition:
            params["slurm_partition"] = partition
    executor.update_parameters(**params)
    uri = _shared_store(jobs, uri)
    submitted = executor.map_array(functools.partial(run_job, after_seed=tuple(after_seed)),
                                   list(jobs), [uri] * len(jobs))
    if wait:
        for job in submitted:
            job.result()
    return submitted
