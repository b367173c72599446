"""The trainer's callbacks: what they see, what they write and how they stop the loop."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dhcbench.benchmark import checkpoint
from dhcbench.benchmark.building import build_method
from dhcbench.benchmark.callbacks import EARLY_STOP, PRUNED, Callback, EarlyStopping
from dhcbench.benchmark.planning import plan_run
from dhcbench.benchmark.runner import training_sampler
from dhcbench.benchmark.train_state import seed_everything
from dhcbench.benchmark.trainer import Trainer
from dhcbench.benchmark.tuning import OptunaPruning
from dhcbench.datasets.loaders import centre_crops

TINY = {
    "data": {"options": {"volume_size": [20, 40, 40], "num_cases": 10},
             "patch_size": [16, 32, 32]},
    "train": {"base_filters": 4, "iters_per_epoch": 2, "eval_interval": 1, "epochs": 3},
}


def _trainer(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
             callbacks: list[Callback], **train: object) -> tuple[Trainer, list]:
    monkeypatch.setenv("DHCBENCH_DATA", str(data_dir))
    plan = plan_run("fully", "phantom", 0.2, [0], [TINY, {"train": train}])
    spec, dspec = plan.specs[0], plan.dataset_spec
    seed_everything(0)
    method = build_method(spec, dspec)
    sampler = training_sampler(spec, plan, method)
    logs: list[tuple[int, dict[str, float]]] = []
    trainer = Trainer(spec.train, method, sampler,
                      centre_crops(plan.dataset, dspec, plan.split.eval), dspec.class_names,
                      tmp_path, log=lambda metrics, step: logs.append((step, metrics)),
                      callbacks=callbacks)
    return trainer, logs


class Recorder(Callback):
    def __init__(self) -> None:
        self.iterations: list[int] = []
        self.evaluations: list[tuple[int, tuple[int, ...], bool, float]] = []
        self.saves = 0

    def on_iteration_end(self, trainer: Trainer) -> None:
        self.iterations.append(trainer.pos.global_iter)

    def on_evaluation_end(self, trainer: Trainer, epoch: int, dice: np.ndarray,
                          improved: bool) -> None:
        self.evaluations.append((epoch, dice.shape, improved, trainer.pos.best_dice))

    def on_save(self, trainer: Trainer) -> None:
        self.saves += 1


def test_callbacks_see_every_iteration_evaluation_and_save(tmp_path, data_dir, monkeypatch):
    rec = Recorder()
    trainer, logs = _trainer(tmp_path, data_dir, monkeypatch, [rec])
    result = trainer.fit()
    assert rec.iterations == list(range(1, 9))  # epochs 0..3, 2 iterations each
    assert [e[0] for e in rec.evaluations] == [0, 1, 2, 3]
    assert all(shape == (13,) for _, shape, _, _ in rec.evaluations)
    assert rec.evaluations[0][2] is True  # the first evaluation is always a new best
    # ``improved`` is true exactly where the logged mean beats every earlier one.
    means = [m["eval/dice_mean"] for _, m in logs if "eval/dice_mean" in m]
    assert [e[2] for e in rec.evaluations] == [
        i == 0 or means[i] > max(means[:i]) for i in range(len(means))]
    assert rec.saves >= 1 and not result.pruned and not result.stopped_early
    best = checkpoint.load(tmp_path / checkpoint.BEST)
    assert best["epoch"] == result.best_epoch
    assert best["eval_dice"] == pytest.approx(max(means))
    assert checkpoint.load(tmp_path / checkpoint.LAST)["position"]["done"] is True


def test_a_callback_stop_ends_the_loop_after_that_evaluation(tmp_path, data_dir, monkeypatch):
    class PruneAtOne(Callback):
        def on_evaluation_end(self, trainer, epoch, dice, improved):
            if epoch == 1:
                trainer.request_stop(PRUNED)

    rec = Recorder()
    trainer, _ = _trainer(tmp_path, data_dir, monkeypatch, [PruneAtOne(), rec])
    result = trainer.fit()
    assert result.pruned and not result.stopped_early
    assert result.last_epoch == 1 and result.iterations == 4
    assert [e[0] for e in rec.evaluations] == [0, 1]
    assert (tmp_path / checkpoint.LAST).is_file()


def test_early_stopping_asks_to_stop_once_the_best_is_patience_epochs_old():
    stops: list[str] = []
    fake = SimpleNamespace(pos=SimpleNamespace(best_epoch=2), request_stop=stops.append)
    cb = EarlyStopping(patience=3)
    for epoch in (2, 3, 4):
        cb.on_evaluation_end(fake, epoch, np.zeros(13), improved=epoch == 2)
    assert stops == []
    cb.on_evaluation_end(fake, 5, np.zeros(13), improved=False)
    assert stops == [EARLY_STOP]


def test_patience_in_the_spec_stops_the_trainer_early(tmp_path, data_dir, monkeypatch):
    # At lr 1e-12 only the batch-norm statistics move, so the eval Dice soon stops
    # improving; with patience 1 the first evaluation that is no new best ends training.
    rec = Recorder()
    trainer, _ = _trainer(tmp_path, data_dir, monkeypatch, [rec], patience=1, epochs=6,
                          lr=1e-12)
    result = trainer.fit()
    improved = [e[2] for e in rec.evaluations]
    assert result.stopped_early and not result.pruned
    assert improved[-1] is False and all(improved[:-1])
    assert result.last_epoch == len(improved) - 1 < 6
    assert result.best_epoch == result.last_epoch - 1


def test_optuna_pruning_reports_the_mean_and_stops_a_pruned_trial(tmp_path, data_dir,
                                                                   monkeypatch):
    class Trial:
        def __init__(self) -> None:
            self.reports: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reports.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reports) == 2

    trial = Trial()
    trainer, logs = _trainer(tmp_path, data_dir, monkeypatch, [OptunaPruning(trial)])
    result = trainer.fit()
    means = [(m["eval/dice_mean"], step) for step, m in logs if "eval/dice_mean" in m]
    assert trial.reports == means == [(means[0][0], 0), (means[1][0], 1)]
    assert result.pruned and result.last_epoch == 1


def test_the_trainer_places_the_method_as_the_spec_says(tmp_path, data_dir, monkeypatch):
    trainer, _ = _trainer(tmp_path, data_dir, monkeypatch, [], threads=1, channels_last=True)
    assert torch.get_num_threads() == 1
    assert trainer.device.type == "cpu"
    weight = next(p for p in trainer.method.networks["net"].parameters() if p.ndim == 5)
    assert weight.is_contiguous(memory_format=torch.channels_last_3d)
