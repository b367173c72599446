"""The one training loop. It never names a method (reference §5 skeleton).

Per epoch: set the poly learning rate and the ramped-up λ (both lagged by one epoch), run
the epoch's iterations (one optimiser per network, one AMP scaler on CUDA), log the epoch
means, and every ``eval_interval`` epochs score the eval split on one centred patch per case,
keep the best checkpoint, save the full state and stop early after ``patience`` epochs
without improvement. A first SIGINT/SIGTERM stops cleanly at the next iteration boundary
and saves the exact state there, so ``--resume`` continues as if nothing happened.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dhcbench.benchmark import checkpoint
from dhcbench.benchmark.spec import TrainSpec
from dhcbench.datasets.loaders import PatchSampler
from dhcbench.interfaces import StepContext
from dhcbench.methods.base import Method
from dhcbench.methods.losses import hard_dice_per_class
from dhcbench.schedules import poly_lr, unsup_weight

LogFn = Callable[[dict[str, float], int], None]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices), as the reference does."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag the loop polls between iterations; a second
    SIGINT interrupts at once. Outside the main thread no handler is installed."""

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
    """How training ended."""

    best_epoch: int
    best_dice: float
    last_epoch: int
    stopped_early: bool
    interrupted: bool
    iterations: int


#: At an evaluation epoch ``last.pt`` (the full training state, 150 MB for two 16-filter
#: V-Nets) is written only when this many seconds have passed since the last write; it is
#: always written on an interrupt and at the end. A crash loses at most this much training.
LAST_SAVE_INTERVAL_S = 60.0


@dataclass
class _Position:
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


class Trainer:
    """Trains a :class:`Method` on patches from a :class:`PatchSampler`.

    ``class_names`` label the per-class logs; ``log`` receives metric dicts with the epoch as
    step; ``on_iteration`` (optional) is called after every iteration with (epoch, global
    iteration) for progress display.
    """

    def __init__(
        self,
        train: TrainSpec,
        method: Method,
        sampler: PatchSampler,
        eval_set: list[tuple[torch.Tensor, torch.Tensor]],
        class_names: tuple[str, ...],
        ckpt_dir: Path,
        device: torch.device,
        log: LogFn,
        on_iteration: Callable[[int, int], None] | None = None,
        on_eval: Callable[[int, float], None] | None = None,
    ) -> None:
        self.spec = train
        self.method = method
        self.sampler = sampler
        self.eval_set = eval_set
        self.class_names = class_names
        self.ckpt_dir = Path(ckpt_dir)
        self.device = device
        self.log = log
        self.on_iteration = on_iteration
        self.on_eval = on_eval
        self.stop = StopRequest()
        self.use_amp = train.amp and device.type == "cuda"
        self.optimizers = {
            name: torch.optim.SGD(
                net.parameters(), lr=train.lr, momentum=train.momentum,
                weight_decay=train.weight_decay, nesterov=train.nesterov,
            )
            for name, net in method.optimized_networks().items()
        }
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.pos = _Position()
        self._pending_best: dict[str, Any] | None = None
        self._last_saved = -math.inf

    # -- plan --------------------------------------------------------------------------------
    def iterations_per_epoch(self) -> int:
        return self.spec.iters_per_epoch or self.sampler.iterations_per_epoch()

    def total_iterations(self) -> int:
        return (self.spec.epochs + 1) * self.iterations_per_epoch()

    def _plan(self) -> list[tuple[np.ndarray, np.ndarray]]:
        n = self.iterations_per_epoch()
        plan: list[tuple[np.ndarray, np.ndarray]] = []
        while len(plan) < n:
            plan.extend(self.sampler.plan_epoch())
        return plan[:n]

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        p = self.pos
        return {
            "position": {
                "epoch": p.epoch, "index": p.index, "global_iter": p.global_iter,
                "plan": p.plan, "best_dice": p.best_dice, "best_epoch": p.best_epoch,
                "sums": {k: v.detach().cpu() for k, v in p.sums.items()}, "count": p.count,
                "done": p.done, "stopped_early": p.stopped_early,
            },
            "method": self.method.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "sampler_rng": self.sampler.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
        self.method.to(self.device)
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.set_state(state["sampler_rng"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        p = state["position"]
        self.pos = _Position(
            epoch=p["epoch"], index=p["index"], global_iter=p["global_iter"], plan=p["plan"],
            best_dice=p["best_dice"], best_epoch=p["best_epoch"],
            sums={k: v.to(self.device) for k, v in p["sums"].items()}, count=p["count"],
            done=p["done"], stopped_early=p["stopped_early"],
        )

    def _save_last(self, force: bool = True) -> None:
        """Write ``last.pt`` (and first a pending ``best.pt``, so that the last state on disk
        never refers to a best one that is not); unless ``force``, only when
        :data:`LAST_SAVE_INTERVAL_S` have passed since the previous write."""
        now = time.monotonic()
        if not force and now - self._last_saved < LAST_SAVE_INTERVAL_S:
            return
        if self._pending_best is not None:
            checkpoint.save(self._pending_best, self.ckpt_dir / checkpoint.BEST)
            self._pending_best = None
        checkpoint.save(self.state_dict(), self.ckpt_dir / checkpoint.LAST)
        self._last_saved = now

    # -- loop --------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train from the current position (fresh or loaded) to the end or an early stop."""
        spec, pos = self.spec, self.pos
        max_epochs = spec.epochs
        if pos.done:
            return self._result(pos.stopped_early, interrupted=False)
        stopped_early = False
        with self.stop.installed():
            while pos.epoch <= max_epochs:
                lr = poly_lr(spec.lr, pos.epoch, max_epochs, spec.poly_power)
                lam = unsup_weight(spec.unsup_weight, pos.epoch,
                                   spec.rampup_epochs or max_epochs, spec.rampup)
                for opt in self.optimizers.values():
                    opt.param_groups[0]["lr"] = lr
                if pos.plan is None:
                    pos.plan = self._plan()
                while pos.index < len(pos.plan):
                    if self.stop.requested:
                        self._save_last()
                        return self._result(stopped_early, interrupted=True)
                    self._step(lr, lam)
                self._end_epoch(lr, lam)
                if pos.epoch % spec.eval_interval == 0:
                    self._evaluate(pos.epoch)
                    waited = pos.epoch - pos.best_epoch
                    pos.epoch += 1
                    pos.index, pos.plan = 0, None
                    if spec.patience is not None and waited >= spec.patience:
                        stopped_early = True
                        break
                    self._save_last(force=False)
                else:
                    pos.epoch += 1
                    pos.index, pos.plan = 0, None
            pos.done, pos.stopped_early = True, stopped_early
            self._save_last()
        return self._result(stopped_early, interrupted=False)

    def _result(self, stopped_early: bool, interrupted: bool) -> FitResult:
        p = self.pos
        return FitResult(
            best_epoch=p.best_epoch, best_dice=p.best_dice,
            last_epoch=p.epoch - 1 if p.index == 0 else p.epoch,
            stopped_early=stopped_early, interrupted=interrupted, iterations=p.global_iter,
        )

    def step(self, lr: float, lam: float) -> None:
        """One training iteration at the current position, starting the next epoch's batch
        plan when the current one is used up (``dhcbench bench`` times this)."""
        pos = self.pos
        if pos.plan is None or pos.index >= len(pos.plan):
            pos.plan, pos.index = self._plan(), 0
        self._step(lr, lam)

    def _step(self, lr: float, lam: float) -> None:
        pos = self.pos
        assert pos.plan is not None
        lab_idx, unl_idx = pos.plan[pos.index]
        batch = self.sampler.batch(lab_idx, unl_idx).to(self.device)
        if self.spec.channels_last:
            batch.image_l = batch.image_l.contiguous(memory_format=torch.channels_last_3d)
            batch.image_u = batch.image_u.contiguous(memory_format=torch.channels_last_3d)
        ctx = StepContext(epoch=pos.epoch, iteration=pos.global_iter, unsup_weight=lam,
                          max_epochs=self.spec.epochs, lr=lr)
        self.method.train()
        with torch.autocast(self.device.type, enabled=self.use_amp):
            out = self.method.training_step(batch, ctx)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        self.method.after_optimizer_step(ctx)
        # Epoch sums stay on the device: no host round-trip inside the step.
        values = {"loss": out.loss.detach(), **out.scalars, **out.vectors}
        for key, value in values.items():
            value = value.detach().float()
            pos.sums[key] = pos.sums[key] + value if key in pos.sums else value.clone()
        pos.count += 1
        pos.index += 1
        pos.global_iter += 1
        if self.on_iteration is not None:
            self.on_iteration(pos.epoch, pos.global_iter)

    def _end_epoch(self, lr: float, lam: float) -> None:
        pos = self.pos
        metrics: dict[str, float] = {"train/lr": lr, "train/lambda": lam}
        if pos.count:
            for key, total in pos.sums.items():
                mean = (total / pos.count).cpu()
                if mean.ndim == 0:
                    metrics[f"train/{key}"] = float(mean)
                else:
                    for name, v in zip(self.class_names, mean.tolist(), strict=False):
                        metrics[f"train/{key}/{name}"] = float(v)
        self.log(metrics, pos.epoch)
        pos.sums, pos.count = {}, 0

    @torch.inference_mode()
    def validate(self) -> np.ndarray:
        """Hard Dice (%) per foreground class on one centred patch per eval case (reference
        §5: averaged over cases; a class absent from both scores 50)."""
        self.method.eval()
        per_case = []
        for image, label in self.eval_set:
            with torch.autocast(self.device.type, enabled=self.use_amp):
                logits = self.method.predict(image.to(self.device))
            per_case.append(hard_dice_per_class(logits.float(), label.to(self.device))[1:].cpu())
        self.method.train()
        return 100.0 * torch.stack(per_case).mean(0).double().numpy()

    def _evaluate(self, epoch: int) -> None:
        pos = self.pos
        dice = self.validate()
        mean = float(dice.mean())
        metrics = {f"eval/dice/{n}": float(v)
                   for n, v in zip(self.class_names[1:], dice, strict=True)}
        metrics["eval/dice_mean"] = mean
        if mean > pos.best_dice:
            pos.best_dice, pos.best_epoch = mean, epoch
            # Kept in memory and written with the next last.pt (see _save_last).
            self._pending_best = {"method": copy.deepcopy(self.method.state_dict()),
                                  "epoch": epoch, "eval_dice": mean}
        metrics["eval/best_dice_mean"] = pos.best_dice
        self.log(metrics, epoch)
        if self.on_eval is not None:
            self.on_eval(epoch, mean)
