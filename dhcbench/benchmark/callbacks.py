"""Trainer callbacks: everything optional around the one training loop.

The :class:`~dhcbench.benchmark.trainer.Trainer` owns the loop, the position and the
monitored value (the eval split's mean Dice and the epoch it was best); a callback reacts to
three moments of it and may ask it to stop. The trainer always runs :class:`BestCheckpoint`
and, when the spec sets a patience, :class:`EarlyStopping`; callers add their own (progress
display in the runner, Optuna pruning in the tuner).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dhcbench.benchmark import checkpoint

if TYPE_CHECKING:
    from dhcbench.benchmark.trainer import Trainer

#: Stop reasons a callback passes to :meth:`Trainer.request_stop`.
EARLY_STOP = "early_stop"
PRUNED = "pruned"


class Callback:
    """Base class: every hook does nothing, so a callback overrides only what it needs."""

    def on_iteration_end(self, trainer: Trainer) -> None:
        """Called after each optimiser step; ``trainer.pos`` holds the new position."""

    def on_evaluation_end(self, trainer: Trainer, epoch: int, dice: np.ndarray,
                          improved: bool) -> None:
        """Called after each evaluation of the eval split.

        Args:
            trainer: the running trainer (``trainer.pos.best_dice`` / ``best_epoch`` are
                already updated).
            epoch: the epoch just evaluated.
            dice: (K-1,) float64 hard Dice in % per foreground class.
            improved: whether the mean of ``dice`` is a new best.
        """

    def on_save(self, trainer: Trainer) -> None:
        """Called just before ``last.pt`` is written (interrupts, the end, and periodically)."""


class BestCheckpoint(Callback):
    """Keeps the networks of the best evaluation and writes them to ``best.pt``.

    The copy is held in memory and written just before the next ``last.pt``, so the last
    state on disk never names a best epoch whose weights are not there.
    """

    def __init__(self, ckpt_dir: Path) -> None:
        self.path = Path(ckpt_dir) / checkpoint.BEST
        self._pending: dict[str, Any] | None = None

    def on_evaluation_end(self, trainer: Trainer, epoch: int, dice: np.ndarray,
                          improved: bool) -> None:
        """Copy the method's state when the mean Dice improved."""
        if improved:
            self._pending = {"method": copy.deepcopy(trainer.method.state_dict()),
                             "epoch": epoch, "eval_dice": trainer.pos.best_dice}

    def on_save(self, trainer: Trainer) -> None:
        """Flush a pending best state to disk."""
        if self._pending is not None:
            checkpoint.save(self._pending, self.path)
            self._pending = None


class EarlyStopping(Callback):
    """Stops training when ``patience`` epochs have passed since the best evaluation."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_evaluation_end(self, trainer: Trainer, epoch: int, dice: np.ndarray,
                          improved: bool) -> None:
        """Ask the trainer to stop once the best epoch is ``patience`` epochs old."""
        if epoch - trainer.pos.best_epoch >= self.patience:
            trainer.request_stop(EARLY_STOP)
