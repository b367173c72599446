"""``dhcbench tune``: Optuna studies over a method's hyper-parameters (β, α, τ, lr, λ …).

The search space comes from the method registry. Each trial is one training run (one seed,
the test split never read: ``eval.run_test=false``) whose objective is the best mean Dice on
the eval split; intermediate evaluations feed Optuna's median pruner. Sampling is TPE with a
fixed seed. Every trial is an MLflow run nested under one study run and linked both ways
(trial user attribute ``mlflow_run_id``; run tags ``optuna.study`` / ``optuna.trial``). The
study lives in an Optuna RDB storage: an SQLite file in the working folder by default, or any
database URL (PostgreSQL) shared by several ``dhcbench tune`` processes on one or many
machines. The best parameters are written as a YAML file that ``dhcbench run --config``
accepts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dhcbench.benchmark.callbacks import PRUNED, Callback
from dhcbench.benchmark.planning import plan_run
from dhcbench.benchmark.runner import Reporter, RunPruned, SeedHook, execute
from dhcbench.benchmark.spec import check_seed, deep_merge, dotted_layer, write_config_file
from dhcbench.benchmark.tracking import ROLE, Tracker, sqlite_creation_lock
from dhcbench.benchmark.trainer import Trainer
from dhcbench.errors import UserError
from dhcbench.methods import METHODS

#: Tuning names that are run-spec settings rather than method keyword arguments.
SPEC_PARAMS = {"lr": "train.lr", "lambda": "train.unsup_weight"}
DEFAULT_STORAGE = "sqlite:///optuna.db"


@dataclass(frozen=True)
class TuneResult:
    """A finished ``tune`` call: the study, its best trial and where the YAML was written."""

    study: str
    best_params: dict[str, Any]
    best_value: float
    trials: int
    config_path: Path
    study_run_id: str


def check_storage(storage: str | None) -> str:
    """The Optuna storage URL (default :data:`DEFAULT_STORAGE`), checked without opening it.

    It must be a database URL SQLAlchemy can parse with an installed driver; an SQLite
    file must go into an existing writable folder. A UserError names ``--storage``
    otherwise. Creates nothing; returns the URL.
    """
    import os

    url = storage or DEFAULT_STORAGE
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        parsed.get_dialect()
    except Exception as exc:  # ArgumentError, NoSuchModuleError, a missing driver
        raise UserError(f"--storage {url}: not a usable database URL ({type(exc).__name__}:"
                        f" {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise UserError(f"--storage {url}: an in-memory SQLite study is lost at exit;"
                            " use sqlite:///<file>")
        db = Path(parsed.database)
        folder = db.parent
        if db.exists() and not db.is_file():
            raise UserError(f"--storage {url}: {db} is not an SQLite file")
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"--storage {url}: the folder {folder} does not exist or cannot"
                            " be written")
    return url


def search_space(method: str, params: Sequence[str] | None) -> dict[str, tuple]:
    """The registry's space for ``method``, restricted to ``params`` (all when None)."""
    info = METHODS.get(method)
    space = dict(info.search_space)
    if params is None:
        return space
    unknown = [p for p in params if p not in space]
    if unknown:
        raise UserError(f"--params {unknown[0]!r}: not tunable for {info.key}"
                        f" (its search space: {', '.join(space)})")
    return {p: space[p] for p in params}


def suggest(trial: Any, name: str, spec: tuple) -> Any:
    """Draw one value: ``("float", lo, hi)``, ``("log_float", lo, hi)``, ``("int", lo, hi)``."""
    kind, low, high = spec
    if kind == "float":
        return trial.suggest_float(name, low, high)
    if kind == "log_float":
        return trial.suggest_float(name, low, high, log=True)
    if kind == "int":
        return trial.suggest_int(name, low, high)
    raise ValueError(f"unknown search-space kind {kind!r}")


def as_layer(values: Mapping[str, Any]) -> dict[str, Any]:
    """Tuned values as a run-spec override layer (``method.kwargs`` or spec settings)."""
    layer: dict[str, Any] = {}
    for name, value in values.items():
        key = SPEC_PARAMS.get(name, f"method.kwargs.{name}")
        layer = deep_merge(layer, dotted_layer(key, value, "tuned parameter"))
    return layer


def _study_run(tracker: Tracker, study: str, method: str, dataset: str, ratio: float) -> str:
    """The MLflow run that holds a study's trials (shared by every tuning process)."""
    found = tracker.search(f"tags.`{ROLE}` = 'study' and tags.`optuna.study` = '{study}'")
    if found:
        return found[0].info.run_id
    return tracker.start_run(f"tune-{study}", {ROLE: "study", "optuna.study": study,
                                               "method": method, "dataset": dataset,
                                               "ratio": ratio})


class _TrialReporter(Reporter):
    """The caller's reporter, also recording the trial's MLflow run on the Optuna trial."""

    def __init__(self, trial: Any, base: Reporter) -> None:
        super().__init__(start_seed=base.start_seed, iteration=base.iteration,
                         evaluated=base.evaluated, testing=base.testing,
                         message=base.message, parent_started=self._started)
        self.trial = trial

    def _started(self, run_id: str) -> None:
        self.trial.set_user_attr("mlflow_run_id", run_id)


class OptunaPruning(Callback):
    """Reports each evaluation's mean Dice (%) to an Optuna trial and stops pruned trials."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def on_evaluation_end(self, trainer: Trainer, epoch: int, dice: np.ndarray,
                          improved: bool) -> None:
        """Report the mean Dice at ``epoch``; ask the trainer to stop if Optuna prunes."""
        self.trial.report(float(dice.mean()), epoch)
        if self.trial.should_prune():
            trainer.request_stop(PRUNED)


def tune(
    method: str,
    dataset: str,
    ratio: float,
    trials: int,
    tracker: Tracker | Callable[[], Tracker],
    layers: Sequence[Mapping[str, Any]] = (),
    params: Sequence[str] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    out: Path = Path("."),
    report: Reporter | None = None,
    sampler_seed: int | None = None,
    after_seed: Sequence[SeedHook] = (),
) -> TuneResult:
    """Run ``trials`` trials (adding to the study if it exists) and write the best YAML.

    ``tracker`` is the tracker, or a function that opens it: it is called once every input
    is checked and the study opened, so bad input creates no MLflow store. ``after_seed``:
    the runner's seed hooks, run in every trial. ``seed`` is every trial's training seed;
    ``sampler_seed`` (default: ``seed``) seeds TPE. Processes sharing a study should use
    different sampler seeds, or they propose the same first points.
    """
    import optuna

    if trials < 1:
        raise UserError(f"--trials {trials}: need at least one trial")
    check_seed(seed, "--seed")
    if sampler_seed is not None:
        check_seed(sampler_seed, "--sampler-seed")
    storage = check_storage(storage)
    key = METHODS.canonical(method)
    space = search_space(key, params)
    if not space:
        raise UserError(f"{key} has no tunable parameters")
    name = study_name or f"{key}-{dataset.replace(':', '-')}-{ratio:g}"
    report = report or Reporter()
    base_layers = [*layers, {"eval": {"run_test": False}}]
    # Validate everything (and prepare the data) before the study or any run is created.
    plan_run(key, dataset, ratio, [seed], base_layers)
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        with sqlite_creation_lock(storage):
            study = optuna.create_study(
                study_name=name, storage=storage, load_if_exists=True,
                direction="maximize", sampler=optuna.samplers.TPESampler(
                    seed=seed if sampler_seed is None else sampler_seed),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
            )
    except Exception as exc:  # storage URLs fail in many ways (driver, auth, network)
        raise UserError(f"--storage {storage}: cannot open the Optuna storage"
                        f" ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    if not hasattr(tracker, "start_run"):  # a function that opens the tracker
        tracker = tracker()  # type: ignore[operator]
    study_run = _study_run(tracker, name, key, dataset, ratio)
    tracker.set_tags(study_run, {"optuna.storage": _redact(storage)})

    def objective(trial: optuna.Trial) -> float:
        values = {p: suggest(trial, p, space[p]) for p in space}
        plan = plan_run(key, dataset, ratio, [seed], [*base_layers, as_layer(values)])
        try:
            parent = execute(plan, tracker, resume=False, report=_TrialReporter(trial, report),
                             nested_in=study_run,
                             extra_tags={"optuna.study": name, "optuna.trial": trial.number},
                             after_seed=after_seed, callbacks=[OptunaPruning(trial)])
        except RunPruned as exc:
            raise optuna.TrialPruned(f"trial {trial.number}: {exc}") from exc
        child = tracker.children(parent)[0]
        return float(child.data.metrics["eval/best_dice_mean"])

    study.optimize(objective, n_trials=trials)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise UserError(f"study {name}: no trial completed (all pruned or failed)")
    best = study.best_trial
    config = as_layer(best.params)
    path = Path(out) / f"best_{name.replace('/', '_')}.yaml"
    write_config_file(path, config)
    tracker.log_metrics(study_run, {"best_eval_dice": best.value,
                                    "trials": len(study.trials)})
    tracker.set_tags(study_run, {"optuna.best_trial": best.number,
                                 "optuna.best_run": best.user_attrs.get("mlflow_run_id", "")})
    tracker.end(study_run, "FINISHED")
    return TuneResult(name, dict(best.params), float(best.value), len(study.trials), path,
                      study_run)


def _redact(url: str) -> str:
    """A storage URL without its password (for the MLflow tag)."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url
