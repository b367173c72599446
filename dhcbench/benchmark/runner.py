"""Executing a planned run: train and test every seed under MLflow.

The plan comes from :mod:`dhcbench.benchmark.planning`; each seed is trained and tested by
:func:`dhcbench.benchmark.seed_run.run_seed`. :func:`execute` opens one parent run and one
child run per seed; a crash marks them FAILED and an interrupt KILLED, with the exact
training state saved for ``--resume``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dhcbench.benchmark.callbacks import Callback
from dhcbench.benchmark.planning import (
    RunPlan,
    checkpoint_dir,
    run_name,
    run_params,
    run_tags,
)
from dhcbench.benchmark.run_records import (
    DESCRIPTION,
    dataset_input,
    describe,
    log_parent_summary,
    resolved_spec,
    system_tags,
)
from dhcbench.benchmark.seed_run import (
    CHECKPOINTED,
    Reporter,
    RunInterrupted,
    RunPruned,
    SeedHook,
    SeedReport,
    run_seed,
    training_sampler,
)
from dhcbench.benchmark.spec import RunSpec, spec_key
from dhcbench.benchmark.tracking import CHECKPOINT_DIR, FAILURE, KEY, ROLE, SEED_KEY, Tracker
from dhcbench.errors import UserError, first_line

__all__ = ["FAILURE", "Reporter", "RunInterrupted", "RunPruned", "SeedHook", "SeedReport",
           "execute", "run_seed", "training_sampler"]


#: Called with the tracker, the (open) parent run id and its seed-run ids, after every seed.
ParentHook = Callable[[Tracker, str, list[str]], None]


def _failure_reason(exc: BaseException) -> str:
    """One line for the ``dhcbench.failure`` tag: the error, its type when it is a crash."""
    if isinstance(exc, UserError):
        return first_line(exc)[:500]
    return f"{type(exc).__name__}: {first_line(exc)}"[:500]


def _find_resumable(tracker: Tracker, plan: RunPlan) -> Any | None:
    runs = tracker.search(f"tags.`{KEY}` = '{plan.key}' and tags.`{ROLE}` = 'parent'")
    for run in runs:
        if run.info.status != "FINISHED":
            return run
    return None


def _open_parent(plan: RunPlan, tracker: Tracker, resume: bool, report: Reporter,
                 nested_in: str | None, extra_tags: Mapping[str, Any] | None,
                 ) -> tuple[str, dict[str | None, Any]]:
    """The parent run to use (reopened on ``resume``, else new) and its children by seed."""
    spec0 = plan.specs[0]
    parent = _find_resumable(tracker, plan) if resume else None
    if resume and parent is None:
        report.message("--resume: no unfinished run of this configuration; starting a new one")
    if parent is not None:
        parent_id = parent.info.run_id
        tracker.reopen(parent_id)
        return parent_id, {r.data.tags.get("seed"): r for r in tracker.children(parent_id)}
    tags = run_tags(spec0, plan, "parent") | system_tags() | {DESCRIPTION: describe(spec0, plan)}
    parent_id = tracker.start_run(run_name(spec0), tags | dict(extra_tags or {}), nested_in)
    resolved = resolved_spec(spec0, plan, getattr(tracker, "uri", None))
    params = run_params(spec0, plan, resolved)
    params.pop("seed", None)
    params["seeds"] = ",".join(str(s.seed) for s in plan.specs)
    tracker.log_params(parent_id, params)
    _log_spec_and_data(tracker, parent_id, plan, resolved)
    return parent_id, {}


def _log_spec_and_data(tracker: Tracker, run_id: str, plan: RunPlan,
                       resolved: Mapping[str, Any]) -> None:
    """The resolved spec as ``spec.yaml`` and the dataset as the run's training input."""
    tracker.log_text(run_id, yaml.safe_dump(dict(resolved), sort_keys=False), "spec.yaml")
    tracker.log_dataset(run_id, dataset_input(plan), "training")


def _open_child(spec: RunSpec, plan: RunPlan, tracker: Tracker, parent_id: str,
                child: Any | None) -> tuple[str, Path]:
    """The seed's run (reopened when ``child`` is an unfinished one) and checkpoint folder."""
    if child is not None:
        child_id = child.info.run_id
        tracker.reopen(child_id)
        # Recorded absolute; older runs recorded it relative to their working folder.
        return child_id, Path(child.data.tags.get(CHECKPOINT_DIR)
                              or checkpoint_dir(spec, child_id)).absolute()
    tags = run_tags(spec, plan, "seed") | system_tags() | {
        "seed": spec.seed, SEED_KEY: spec_key(spec, with_seed=True),
        DESCRIPTION: describe(spec, plan, spec.seed)}
    child_id = tracker.start_run(run_name(spec, spec.seed), tags, parent_id)
    ckpt = checkpoint_dir(spec, child_id).absolute()
    tracker.set_tags(child_id, {CHECKPOINT_DIR: str(ckpt)})
    resolved = resolved_spec(spec, plan, getattr(tracker, "uri", None))
    tracker.log_params(child_id, run_params(spec, plan, resolved))
    _log_spec_and_data(tracker, child_id, plan, resolved)
    return child_id, ckpt


def execute(plan: RunPlan, tracker: Tracker, resume: bool, report: Reporter,
            nested_in: str | None = None, extra_tags: Mapping[str, Any] | None = None,
            after_seed: Sequence[SeedHook] = (), callbacks: Sequence[Callback] = (),
            after_parent: Sequence[ParentHook] = ()) -> str:
    """Run every seed of ``plan`` under one parent MLflow run; returns the parent run id.

    ``nested_in`` makes the parent a child of another run (a tuning study or a sweep);
    ``after_seed`` hooks run on every seed once it is tested (figures, …); ``callbacks``
    go to every seed's trainer (e.g. Optuna pruning); ``after_parent`` hooks get the parent
    run (still open) and its seed runs once every seed is done (the parent's figures).
    """
    tracker.reap_stale()
    parent_id, children = _open_parent(plan, tracker, resume, report, nested_in, extra_tags)
    report.parent_started(parent_id)
    results: list[tuple[int, str, dict[str, float]]] = []
    child_id: str | None = None
    try:
        for spec in plan.specs:
            child = children.get(str(spec.seed))
            if child is not None and child.info.status == "FINISHED":
                results.append((spec.seed, child.info.run_id, dict(child.data.metrics)))
                report.message(f"{run_name(spec, spec.seed)}: already finished, skipped")
                continue
            child_id, ckpt = _open_child(spec, plan, tracker, parent_id, child)
            results.append((spec.seed, child_id, run_seed(
                spec, plan, tracker, child_id, ckpt, resume=child is not None, report=report,
                after_seed=after_seed, callbacks=callbacks,
                expect_checkpoint=child is not None
                and child.data.tags.get(CHECKPOINTED) == "true")))
            tracker.end(child_id, "FINISHED")
            child_id = None
    except RunPruned:
        for run_id in (child_id, parent_id):
            if run_id is not None:
                tracker.set_tags(run_id, {"dhcbench.pruned": "true"})
                tracker.end(run_id, "FINISHED")
        raise
    except (RunInterrupted, KeyboardInterrupt):
        if child_id is not None:
            tracker.end(child_id, "KILLED")
        tracker.end(parent_id, "KILLED")
        raise
    except BaseException as exc:
        reason = {FAILURE: _failure_reason(exc)}
        for run_id in (child_id, parent_id):
            if run_id is not None:
                tracker.set_tags(run_id, reason)
                tracker.end(run_id, "FAILED")
        raise
    log_parent_summary(tracker, parent_id, plan, results)
    for hook in after_parent:
        hook(tracker, parent_id, [run_id for _, run_id, _ in results])
    tracker.end(parent_id, "FINISHED")
    return parent_id
