"""Sweep jobs: what one job is, its state in the tracking store, and running it.

A job is one seed of one (method, dataset, ratio). Its key is the hash of its resolved spec
and the package version (``spec_key(spec, with_seed=True)``), which the runner writes as the
``dhcbench.seed_key`` tag of the job's MLflow run; :func:`job_states` reads the tags back, so
that a job whose run FINISHED is skipped and an unfinished one resumed. :func:`run_job` is
what every executor runs, here or on a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dhcbench.benchmark.planning import plan_run
from dhcbench.benchmark.runner import Reporter, SeedHook, execute
from dhcbench.benchmark.tracking import ROLE, SEED_KEY, Tracker, open_tracker


@dataclass(frozen=True)
class Job:
    """One seed of one (method, dataset, ratio) with its override layers.

    ``layers`` are the override layers of :func:`dhcbench.benchmark.planning.plan_run`; the
    last one names the MLflow experiment (``{"tracking": {"experiment": ...}}``). ``key`` is
    the job's identity (see the module docstring); "" for a job made by hand.
    """

    method: str
    dataset: str
    ratio: float
    seed: int
    layers: tuple[Mapping[str, Any], ...]
    key: str = ""

    @property
    def label(self) -> str:
        """``<method>-<dataset>-<ratio>-seed<n>``, the job's name in messages.

        The ratio is written as the fraction it is (``0.2``), not as a percentage.
        """
        return f"{self.method}-{self.dataset}-{self.ratio:g}-seed{self.seed}"

    @property
    def experiment(self) -> str:
        """The MLflow experiment the job's run goes to, named by its last layer.

        Suites always end a job's layers with the tracking layer.
        """
        return self.layers[-1]["tracking"]["experiment"]


def job_states(tracker: Tracker, jobs: Sequence[Job]) -> dict[str, str]:
    """The state of every job key: ``done``, ``resume`` or ``new``.

    ``done``: a FINISHED seed run has the job's key; ``resume``: only unfinished ones do (the
    run is continued from its checkpoint); ``new``: no run has it.
    """
    states = {j.key: "new" for j in jobs}
    for run in tracker.search(f"tags.`{ROLE}` = 'seed'"):
        key = run.data.tags.get(SEED_KEY)
        if key in states:
            status = "done" if run.info.status == "FINISHED" else "resume"
            if states[key] != "done":
                states[key] = status
    return states


def run_job(job: Job, uri: str | None = None, after_seed: Sequence[SeedHook] = ()) -> str:
    """Train one job, resuming it when it has an unfinished run; returns its final state.

    The state is ``skipped`` (the job was done already) or ``trained``. Top-level and
    picklable: this is what a worker process or a SLURM array task executes. ``after_seed``:
    the runner's seed hooks (top-level functions, so that they pickle).
    """
    tracker = open_tracker(uri, job.experiment)
    if job_states(tracker, [job])[job.key] == "done":
        return "skipped"
    plan = plan_run(job.method, job.dataset, job.ratio, [job.seed], list(job.layers))
    execute(plan, tracker, resume=True, report=Reporter(), after_seed=after_seed)
    return "trained"
