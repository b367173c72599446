"""The training state the trainer checkpoints, and the process-wide pieces around it.

:class:`Position` is where the loop stands (epoch, iteration, batch plan, monitored best,
running sums); :func:`global_rng_state` / :func:`set_global_rng_state` capture and restore
every global random generator, so that a resumed run continues bit for bit;
:class:`StopRequest` turns signals into a flag the loop polls.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dhcbench.errors import UserError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices), as the reference does."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag the loop polls between iterations.

    A second SIGINT interrupts at once. Outside the main thread no handler is installed.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Install the handlers for the duration of the ``with`` block."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)


@dataclass
class FitResult:
    """How training ended (``best_dice`` is the eval split's mean Dice in %)."""

    best_epoch: int
    best_dice: float
    last_epoch: int
    stopped_early: bool
    interrupted: bool
    iterations: int
    pruned: bool = False


@dataclass
class Position:
    """Where the training loop stands; saved in ``last.pt`` under ``"position"``.

    ``plan`` is the current epoch's batches as (labeled indices, unlabeled indices) pairs;
    ``sums`` the epoch's running sums of the step outputs (scalars or (K,) vectors, on the
    training device) over ``count`` steps; ``best_dice`` the best eval mean Dice in %.
    """

    epoch: int = 0
    index: int = 0  # next iteration within the epoch
    global_iter: int = 0
    plan: list[tuple[np.ndarray, np.ndarray]] | None = None
    best_dice: float = -1.0
    best_epoch: int = -1
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    count: int = 0
    done: bool = False  # training finished (last epoch or early stop); resuming tests only
    stopped_early: bool = False

    def accumulate(self, values: dict[str, torch.Tensor]) -> None:
        """Add one step's outputs (0-d or (K,) tensors) to the epoch's running sums.

        The sums stay on the device: no host round-trip inside the step.
        """
        for key, value in values.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def epoch_means(self, class_names: tuple[str, ...]) -> dict[str, float]:
        """The epoch's means as ``train/<key>`` (``train/<key>/<class>`` for vectors), reset.

        Empty when no step ran this epoch (e.g. resumed right at its end).
        """
        metrics: dict[str, float] = {}
        if self.count:
            for key, total in self.sums.items():
                mean = (total / self.count).cpu()
                if mean.ndim == 0:
                    metrics[f"train/{key}"] = float(mean)
                else:
                    for name, v in zip(class_names, mean.tolist(), strict=False):
                        metrics[f"train/{key}/{name}"] = float(v)
        self.sums, self.count = {}, 0
        return metrics

    def to_dict(self) -> dict[str, Any]:
        """The position as plain values (sums moved to the CPU)."""
        return {
            "epoch": self.epoch, "index": self.index, "global_iter": self.global_iter,
            "plan": self.plan, "best_dice": self.best_dice, "best_epoch": self.best_epoch,
            "sums": {k: v.detach().cpu() for k, v in self.sums.items()}, "count": self.count,
            "done": self.done, "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_dict(cls, p: dict[str, Any], device: torch.device) -> Position:
        """Inverse of :meth:`to_dict`, with the sums moved to ``device``."""
        return cls(
            epoch=p["epoch"], index=p["index"], global_iter=p["global_iter"], plan=p["plan"],
            best_dice=p["best_dice"], best_epoch=p["best_epoch"],
            sums={k: v.to(device) for k, v in p["sums"].items()}, count=p["count"],
            done=p["done"], stopped_early=p["stopped_early"],
        )


def global_rng_state() -> dict[str, Any]:
    """The state of torch's (CPU and every CUDA device), NumPy's and Python's generators."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`global_rng_state` captured (CUDA only where there is CUDA)."""
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])


class TrainingDiverged(UserError):
    """A loss, a logged value or the eval Dice became NaN or infinite.

    Raised by the trainer the moment it sees one, before the optimiser step and before any
    checkpoint is written, so the last checkpoint on disk is the last finite state.
    ``what`` names the value (``loss``, ``weights_1`` …), ``epoch`` and ``iteration`` (the
    global iteration) where it happened; ``run``, when given, starts the message.
    """

    def __init__(self, what: str, epoch: int, iteration: int, run: str = "") -> None:
        self.what, self.epoch, self.iteration = what, epoch, iteration
        super().__init__(f"{run + ': ' if run else ''}training diverged: {what} became"
                         f" non-finite at epoch {epoch}, iteration {iteration}")


def first_non_finite(values: dict[str, torch.Tensor]) -> str | None:
    """The name of the first of ``values`` (0-d or (K,) tensors) holding a NaN or ±inf.

    One host synchronisation for all of them; None when every value is finite.
    """
    if not values:
        return None
    finite = torch.stack([torch.isfinite(v.detach()).all() for v in values.values()])
    if bool(finite.all()):
        return None
    return next(k for k, ok in zip(values, finite.tolist(), strict=True) if not ok)
