"""One seed of a run: train it, test it and hand it to the seed hooks.

:func:`run_seed` works inside a child run that :func:`dhcbench.benchmark.runner.execute`
opened; the progress display reaches it through a :class:`Reporter`, the trainer's extra
behaviour through callbacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dhcbench.benchmark import checkpoint
from dhcbench.benchmark.building import build_method
from dhcbench.benchmark.callbacks import Callback
from dhcbench.benchmark.planning import RunPlan, labeled_counts, run_name, training_ids
from dhcbench.benchmark.run_records import log_trained_model
from dhcbench.benchmark.spec import RunSpec
from dhcbench.benchmark.tracking import Tracker
from dhcbench.benchmark.train_state import TrainingDiverged, seed_everything
from dhcbench.benchmark.trainer import Trainer
from dhcbench.datasets.loaders import EvalCase, PatchSampler, centre_crops, iter_cases
from dhcbench.errors import UserError
from dhcbench.evaluation.inference import predict_case
from dhcbench.evaluation.scoring import COLUMNS, case_rows, summarise
from dhcbench.interfaces import SetupContext
from dhcbench.methods import METHODS
from dhcbench.methods.base import Method

#: Seconds between two heartbeats of a running seed run (stale after ten minutes without).
HEARTBEAT_INTERVAL_S = 60.0

#: Tag set once a seed run has written its first checkpoint: resuming it needs that file.
CHECKPOINTED = "dhcbench.checkpointed"


class RunInterrupted(Exception):
    """Training stopped on a signal; the state is saved and the runs are marked KILLED."""


class RunPruned(Exception):
    """A callback (the tuner's pruning) stopped training early on purpose.

    The runs end FINISHED with the tag ``dhcbench.pruned=true``.
    """


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
    """The patch sampler of one seed's training, with ``method`` set up for it.

    The method's :meth:`~Method.setup` receives the (K,) voxel counts of the labeled
    ground truth, the number of unlabeled cases and the iterations per epoch.
    """
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


def test_method(
    method: Method, spec: RunSpec, plan: RunPlan, device: torch.device,
    which: str, report: Reporter, on_case: Callable[[], None] = lambda: None,
) -> tuple[pd.DataFrame, tuple[EvalCase, np.ndarray]]:
    """Sliding-window predictions on the test split, scored under both contracts.

    ``on_case`` is called after each case (the run's heartbeat).

    Returns the per-case, per-class table (Dice in %, ASD/HD95 in mm) and the first test
    case with its (D, H, W) int64 prediction (for the slices figure).
    """
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
        on_case()
    assert first is not None
    return pd.DataFrame(rows, columns=COLUMNS), first


class ProgressCallback(Callback):
    """Forwards the trainer's iterations and evaluations to a :class:`Reporter`."""

    def __init__(self, report: Reporter, spec: RunSpec) -> None:
        self.report = report
        self.spec = spec

    def on_iteration_end(self, trainer: Trainer) -> None:
        """Advance the seed's progress bar."""
        self.report.iteration(trainer.pos.epoch, trainer.pos.global_iter)

    def on_evaluation_end(self, trainer: Trainer, epoch: int, dice: np.ndarray,
                          improved: bool) -> None:
        """Show the evaluation's mean Dice (%)."""
        self.report.evaluated(self.spec, epoch, float(dice.mean()))


@dataclass(frozen=True)
class SeedReport:
    """What a finished seed hands the hooks of :func:`execute`.

    Its (still open) run, spec, plan, test metrics and the first test case with its
    (D, H, W) int64 prediction.
    """

    tracker: Tracker
    run_id: str
    spec: RunSpec
    plan: RunPlan
    metrics: Mapping[str, float]
    example: tuple[EvalCase, np.ndarray]


#: Called after a seed is tested, before its run is closed (e.g. to log its figures:
#: ``dhcbench.reports.run_figures.log_run_figures``, which the command line passes in).
SeedHook = Callable[[SeedReport], None]


def _metric_logger(tracker: Tracker, run_id: str, resume: bool
                   ) -> Callable[[dict[str, float], int], None]:
    """The trainer's ``log``: to the run, without logging an epoch twice after a resume.

    A resumed run replays, bit for bit, the epochs between its checkpoint and the
    interruption; what it logged for them before is kept and the replay is not logged again,
    so every curve has one point per epoch.
    """
    logged: dict[str, int] = {}
    if resume:
        logged = {k: max(step for step, _ in points)
                  for k, points in tracker.history(run_id, "").items() if points}

    def log(metrics: dict[str, float], step: int) -> None:
        fresh = {k: v for k, v in metrics.items() if step > logged.get(k, -1)}
        if fresh:
            tracker.log_metrics(run_id, fresh, step)

    return log


class _Heartbeat(Callback):
    """Records the run's heartbeat at most every :data:`HEARTBEAT_INTERVAL_S` seconds.

    Called after every iteration and every test case; a run whose heartbeat stops is shown
    as stale by any command, from any host (:func:`dhcbench.benchmark.tracking.is_stale`).
    """

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id, self.last = tracker, run_id, -math.inf

    def __call__(self) -> None:
        """Beat if the interval has passed."""
        now = time.monotonic()
        if now - self.last >= HEARTBEAT_INTERVAL_S:
            self.tracker.heartbeat(self.run_id)
            self.last = now

    def on_iteration_end(self, trainer: Trainer) -> None:
        """Beat (throttled) after an optimiser step."""
        self()

    def on_evaluation_end(self, trainer: Trainer, epoch: int, dice: np.ndarray,
                          improved: bool) -> None:
        """Beat (throttled) after an evaluation."""
        self()


class _MarkCheckpointed(Callback):
    """Tags the run ``dhcbench.checkpointed=true`` at its first checkpoint (see resume)."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id, self.done = tracker, run_id, False

    def on_save(self, trainer: Trainer) -> None:
        """Set the tag once."""
        if not self.done:
            self.tracker.set_tags(self.run_id, {CHECKPOINTED: "true"})
            self.done = True


def run_seed(
    spec: RunSpec,
    plan: RunPlan,
    tracker: Tracker,
    run_id: str,
    ckpt_dir: Path,
    resume: bool,
    report: Reporter,
    after_seed: Sequence[SeedHook] = (),
    callbacks: Sequence[Callback] = (),
    expect_checkpoint: bool = False,
) -> dict[str, float]:
    """Train and test one seed inside its (open) child run; returns its test metrics.

    ``callbacks`` are passed to the trainer after the progress display. With ``resume``,
    training continues from ``last.pt`` in ``ckpt_dir``; when it is missing although the
    run wrote one (``expect_checkpoint``), that is a UserError rather than a silent restart.
    """
    dspec = plan.dataset_spec
    beat = _Heartbeat(tracker, run_id)
    beat()
    seed_everything(spec.seed)
    method = build_method(spec, dspec)
    sampler = training_sampler(spec, plan, method)
    trainer = Trainer(
        spec.train, method, sampler, centre_crops(plan.dataset, dspec, plan.split.eval),
        dspec.class_names, ckpt_dir,
        log=_metric_logger(tracker, run_id, resume),
        callbacks=[ProgressCallback(report, spec), _MarkCheckpointed(tracker, run_id), beat,
                   *callbacks],
    )
    device = trainer.device
    last = ckpt_dir / checkpoint.LAST
    if resume and not last.is_file() and expect_checkpoint:
        raise UserError(f"{run_name(spec, spec.seed)}: cannot resume, its checkpoint {last}"
                        " is gone (moved or deleted); put it back, or run without --resume")
    if resume and last.is_file():
        trainer.load_state_dict(checkpoint.load(last))
        report.message(f"{run_name(spec, spec.seed)}: resumed at epoch {trainer.pos.epoch},"
                       f" iteration {trainer.pos.index}")
    report.start_seed(spec, trainer.total_iterations())
    try:
        result = trainer.fit()
    except TrainingDiverged as exc:
        raise TrainingDiverged(exc.what, exc.epoch, exc.iteration,
                               run=run_name(spec, spec.seed)) from None
    if result.interrupted:
        raise RunInterrupted(f"{run_name(spec, spec.seed)} interrupted by"
                             f" {trainer.stop.signal_name or 'a signal'}")
    if result.pruned:
        raise RunPruned(f"{run_name(spec, spec.seed)} pruned at epoch {result.last_epoch}")
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
        tables["last"], _ = test_method(method, spec, plan, device, "last", report, beat)
        metrics.update(summarise(tables["last"], "test_last"))
    best_path = ckpt_dir / checkpoint.BEST
    if best_path.is_file():
        method.load_state_dict(checkpoint.load(best_path)["method"])
        method.to(device)
    tables["best"], example = test_method(method, spec, plan, device, "best", report, beat)
    metrics.update(summarise(tables["best"], "test"))
    tracker.log_metrics(run_id, metrics, step=max(result.last_epoch, 0))
    for which, table in tables.items():
        tracker.log_text(run_id, table.to_csv(index=False), f"metrics/test_cases_{which}.csv")
    log_trained_model(tracker, run_id, method, spec, plan, best_path)
    for hook in after_seed:
        hook(SeedReport(tracker, run_id, spec, plan, metrics, example))
    return metrics
