"""Executing a planned run (:mod:`dhcbench.benchmark.planning`): train and test every seed
under MLflow.

:func:`execute` opens one parent run and one child run per seed; a crash marks them FAILED
and an interrupt KILLED, with the exact training state saved for ``--resume``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from dhcbench.benchmark import checkpoint
from dhcbench.benchmark.planning import (
    RunPlan,
    build_method,
    checkpoint_dir,
    labeled_counts,
    run_name,
    run_params,
    run_tags,
    training_ids,
)
from dhcbench.benchmark.spec import RunSpec, spec_key
from dhcbench.benchmark.tracking import CHECKPOINT_DIR, KEY, ROLE, SEED_KEY, Tracker
from dhcbench.benchmark.trainer import Trainer, seed_everything
from dhcbench.datasets.loaders import EvalCase, PatchSampler, centre_crops, iter_cases
from dhcbench.evaluation.inference import predict_case, resolve_device
from dhcbench.evaluation.scoring import COLUMNS, aggregate_seeds, case_rows, summarise
from dhcbench.interfaces import SetupContext
from dhcbench.methods import METHODS
from dhcbench.methods.base import Method


class RunInterrupted(Exception):
    """Training stopped on a signal; the state is saved and the runs are marked KILLED."""


class RunPruned(Exception):
    """A caller (the tuner) stopped training early on purpose; the runs end FINISHED with the
    tag ``dhcbench.pruned=true``."""


@dataclass
class Reporter:
    """Callbacks for progress display (all optional; the CLI wires them to rich)."""

    start_seed: Callable[[RunSpec, int], None] = lambda spec, total: None
    iteration: Callable[[int, int], None] = lambda epoch, it: None
    evaluated: Callable[[RunSpec, int, float], None] = lambda spec, epoch, dice: None
    testing: Callable[[str, int, int], None] = lambda which, done, total: None
    message: Callable[[str], None] = lambda text: None
    parent_started: Callable[[str], None] = lambda run_id: None


def training_sampler(spec: RunSpec, plan: RunPlan, method: Method) -> PatchSampler:
    """The patch sampler of one seed's training, with ``method`` set up for it (labeled
    class counts, unlabeled count, iterations per epoch)."""
    data_mode = METHODS.get(spec.method.name).data_mode
    labeled, unlabeled = training_ids(plan, data_mode)
    sampler = PatchSampler(
        plan.dataset, plan.dataset_spec, labeled, unlabeled,
        batch_labeled=spec.train.batch_labeled, batch_unlabeled=spec.train.batch_unlabeled,
        flip=spec.data.flip, seed=spec.seed, mode=data_mode,
    )
    method.setup(labeled_counts(plan, data_mode), SetupContext(
        num_unlabeled=len(plan.split.unlabeled),
        iterations_per_epoch=spec.train.iters_per_epoch or sampler.iterations_per_epoch()))
    return sampler


# -- one seed -----------------------------------------------------------------------------------


def test_method(
    method: Method, spec: RunSpec, plan: RunPlan, device: torch.device,
    which: str, report: Reporter,
) -> tuple[pd.DataFrame, tuple[EvalCase, np.ndarray]]:
    """Sliding-window predictions on the test split, scored under both contracts; also
    returns the first test case with its prediction (for the slices figure)."""
    dspec = plan.dataset_spec
    method.eval()
    rows: list[dict[str, object]] = []
    ids = plan.split.test
    first: tuple[EvalCase, np.ndarray] | None = None
    for i, case in enumerate(iter_cases(plan.dataset, dspec, ids)):
        pred = predict_case(method.predict, case.image, dspec, spec.eval, device,
                            spec.train.amp)
        rows.extend(case_rows(case.case_id, pred, case.label, dspec.class_names, case.spacing))
        if first is None:
            first = (case, pred)
        report.testing(which, i + 1, len(ids))
    assert first is not None
    return pd.DataFrame(rows, columns=COLUMNS), first


def place_method(method: Method, spec: RunSpec, device: torch.device) -> None:
    """Set the spec's CPU thread count, move the method to its device in the memory format
    the spec asks for (channels-last 3D) and compile its networks when asked: what training
    and ``dhcbench bench`` share."""
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    method.to(device)
    if spec.train.channels_last:
        for net in method.networks.values():
            net.to(memory_format=torch.channels_last_3d)
    if spec.train.compile:
        for net in method.networks.values():
            net.compile()


@dataclass(frozen=True)
class SeedReport:
    """What a finished seed hands the hooks of :func:`execute`: its (still open) run, spec,
    plan, test metrics and the first test case with its prediction."""

    tracker: Tracker
    run_id: str
    spec: RunSpec
    plan: RunPlan
    metrics: Mapping[str, float]
    example: tuple[EvalCase, np.ndarray]


#: Called after a seed is tested, before its run is closed (e.g. to log its figures:
#: ``dhcbench.reports.run_figures.log_run_figures``, which the command line passes in).
SeedHook = Callable[[SeedReport], None]


def run_seed(
    spec: RunSpec,
    plan: RunPlan,
    tracker: Tracker,
    run_id: str,
    ckpt_dir: Path,
    resume: bool,
    report: Reporter,
    after_seed: Sequence[SeedHook] = (),
) -> dict[str, float]:
    """Train and test one seed inside its (open) child run; returns its test metrics."""
    dspec = plan.dataset_spec
    device = resolve_device(spec.train.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(spec.seed)
    method = build_method(spec, dspec)
    sampler = training_sampler(spec, plan, method)
    place_method(method, spec, device)
    trainer = Trainer(
        spec.train, method, sampler, centre_crops(plan.dataset, dspec, plan.split.eval),
        dspec.class_names, ckpt_dir, device,
        log=lambda metrics, step: tracker.log_metrics(run_id, metrics, step),
        on_iteration=report.iteration,
        on_eval=lambda epoch, dice: report.evaluated(spec, epoch, dice),
    )
    last = ckpt_dir / checkpoint.LAST
    if resume and last.is_file():
        trainer.load_state_dict(checkpoint.load(last))
        report.message(f"{run_name(spec, spec.seed)}: resumed at epoch {trainer.pos.epoch},"
                       f" iteration {trainer.pos.index}")
    report.start_seed(spec, trainer.total_iterations())
    result = trainer.fit()
    if result.interrupted:
        raise RunInterrupted(f"{run_name(spec, spec.seed)} interrupted by"
                             f" {trainer.stop.signal_name or 'a signal'}")
    tracker.set_tags(run_id, {"best_epoch": result.best_epoch,
                              "stopped_early": result.stopped_early})
    metrics: dict[str, float] = {"eval/best_dice_mean": result.best_dice,
                                 "train/iterations": result.iterations}
    if not spec.eval.run_test:
        tracker.log_metrics(run_id, metrics, step=max(result.last_epoch, 0))
        tracker.set_tags(run_id, {"dhcbench.test": "skipped (eval.run_test=false)"})
        return metrics
    tables: dict[str, pd.DataFrame] = {}
    if spec.eval.test_last:
        tables["last"], _ = test_method(method, spec, plan, device, "last", report)
        metrics.update(summarise(tables["last"], "test_last"))
    best_path = ckpt_dir / checkpoint.BEST
    if best_path.is_file():
        method.load_state_dict(checkpoint.load(best_path)["method"])
        method.to(device)
    tables["best"], example = test_method(method, spec, plan, device, "best", report)
    metrics.update(summarise(tables["best"], "test"))
    tracker.log_metrics(run_id, metrics, step=max(result.last_epoch, 0))
    for which, table in tables.items():
        tracker.log_text(run_id, table.to_csv(index=False), f"metrics/test_cases_{which}.csv")
    if spec.tracking.log_checkpoint and best_path.is_file():
        tracker.log_artifact(run_id, best_path, "checkpoint")
    for hook in after_seed:
        hook(SeedReport(tracker, run_id, spec, plan, metrics, example))
    return metrics


# -- the invocation -----------------------------------------------------------------------------


def _find_resumable(tracker: Tracker, plan: RunPlan) -> Any | None:
    runs = tracker.search(f"tags.`{KEY}` = '{plan.key}' and tags.`{ROLE}` = 'parent'")
    for run in runs:
        if run.info.status != "FINISHED":
            return run
    return None


def execute(plan: RunPlan, tracker: Tracker, resume: bool, report: Reporter,
            nested_in: str | None = None, extra_tags: Mapping[str, Any] | None = None,
            after_seed: Sequence[SeedHook] = ()) -> str:
    """Run every seed of ``plan`` under one parent MLflow run; returns the parent run id.

    ``nested_in`` makes the parent a child of another run (a tuning study or a sweep);
    ``after_seed`` hooks run on every seed once it is tested (figures, …)."""
    spec0 = plan.specs[0]
    tracker.reap_stale()
    parent = _find_resumable(tracker, plan) if resume else None
    if resume and parent is None:
        report.message("--resume: no unfinished run of this configuration; starting a new one")
    if parent is not None:
        parent_id = parent.info.run_id
        tracker.reopen(parent_id)
        children = {r.data.tags.get("seed"): r for r in tracker.children(parent_id)}
    else:
        parent_id = tracker.start_run(run_name(spec0),
                                      run_tags(spec0, plan, "parent") | dict(extra_tags or {}),
                                      nested_in)
        params = run_params(spec0, plan)
        params.pop("seed", None)
        params["seeds"] = ",".join(str(s.seed) for s in plan.specs)
        tracker.log_params(parent_id, params)
        tracker.log_text(parent_id, yaml.safe_dump(spec0.to_dict(), sort_keys=False),
                         "spec.yaml")
        children = {}
    report.parent_started(parent_id)
    results: list[dict[str, float]] = []
    child_id: str | None = None
    try:
        for spec in plan.specs:
            child = children.get(str(spec.seed))
            if child is not None and child.info.status == "FINISHED":
                results.append(dict(child.data.metrics))
                report.message(f"{run_name(spec, spec.seed)}: already finished, skipped")
                continue
            if child is not None:
                child_id = child.info.run_id
                tracker.reopen(child_id)
                ckpt = Path(child.data.tags.get(CHECKPOINT_DIR)
                            or checkpoint_dir(spec, child_id))
            else:
                tags = run_tags(spec, plan, "seed") | {
                    "seed": spec.seed, SEED_KEY: spec_key(spec, with_seed=True)}
                child_id = tracker.start_run(run_name(spec, spec.seed), tags, parent_id)
                ckpt = checkpoint_dir(spec, child_id)
                tracker.set_tags(child_id, {CHECKPOINT_DIR: str(ckpt)})
                tracker.log_params(child_id, run_params(spec, plan))
                tracker.log_text(child_id, yaml.safe_dump(spec.to_dict(), sort_keys=False),
                                 "spec.yaml")
            results.append(run_seed(spec, plan, tracker, child_id, ckpt,
                                    resume=child is not None, report=report,
                                    after_seed=after_seed))
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
    except BaseException:
        if child_id is not None:
            tracker.end(child_id, "FAILED")
        tracker.end(parent_id, "FAILED")
        raise
    tracker.log_metrics(parent_id, aggregate_seeds(results))
    tracker.end(parent_id, "FINISHED")
    return parent_id
