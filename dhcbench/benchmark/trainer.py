"""The one training loop. It never names a method (reference §5 skeleton).

Per epoch: set the poly learning rate and the ramped-up λ (both lagged by one epoch), run
the epoch's iterations (one optimiser per network, one AMP scaler on CUDA), log the epoch
means, and every ``eval_interval`` epochs score the eval split on one centred patch per case
and save the full state. Optional behaviour is a callback (:mod:`.callbacks`). A NaN or
infinite loss, logged value or eval Dice stops training at once (:class:`TrainingDiverged`).
A first SIGINT/SIGTERM stops cleanly at the next iteration boundary and saves the exact
state there, so ``--resume`` continues as if nothing happened.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dhcbench.benchmark import checkpoint
from dhcbench.benchmark.callbacks import EARLY_STOP, PRUNED, BestCheckpoint, Callback, EarlyStopping
from dhcbench.benchmark.placement import place_method
from dhcbench.benchmark.spec import TrainSpec
from dhcbench.benchmark.train_state import (
    FitResult,
    Position,
    StopRequest,
    TrainingDiverged,
    first_non_finite,
    global_rng_state,
    set_global_rng_state,
)
from dhcbench.datasets.loaders import PatchSampler
from dhcbench.interfaces import StepContext
from dhcbench.methods.base import Method
from dhcbench.methods.losses import hard_dice_per_class
from dhcbench.schedules import poly_lr, unsup_weight

LogFn = Callable[[dict[str, float], int], None]


#: At an evaluation epoch ``last.pt`` (the full training state, 150 MB for two 16-filter
#: V-Nets) is written only when this many seconds have passed since the last write; it is
#: always written on an interrupt and at the end. A crash loses at most this much training.
LAST_SAVE_INTERVAL_S = 60.0


class Trainer:
    """Trains a :class:`Method` on patches from a :class:`PatchSampler`.

    On construction the trainer places the method as the spec says (device, threads,
    memory format, compilation: :func:`~dhcbench.benchmark.placement.place_method`).

    Args:
        train: the training section of the run spec.
        method: the method, built and set up (its networks are moved here).
        sampler: the patch sampler of the training split.
        eval_set: (image (1, C, D, H, W) float, label (1, D, H, W) int64) centred patches
            of the eval split.
        class_names: K names, background first, labelling the per-class logs.
        ckpt_dir: where ``last.pt`` and ``best.pt`` are written.
        log: receives metric dicts with the epoch as step.
        callbacks: run after the built-in ones (:class:`BestCheckpoint`, and
            :class:`EarlyStopping` when ``train.patience`` is set), in this order.
    """

    def __init__(
        self,
        train: TrainSpec,
        method: Method,
        sampler: PatchSampler,
        eval_set: list[tuple[torch.Tensor, torch.Tensor]],
        class_names: tuple[str, ...],
        ckpt_dir: Path,
        log: LogFn,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.spec = train
        self.method = method
        self.sampler = sampler
        self.eval_set = eval_set
        self.class_names = class_names
        self.ckpt_dir = Path(ckpt_dir)
        self.log = log
        self.device = place_method(train, method)
        builtin: list[Callback] = [BestCheckpoint(self.ckpt_dir)]
        if train.patience is not None:
            builtin.append(EarlyStopping(train.patience))
        self.callbacks = [*builtin, *callbacks]
        self.stop = StopRequest()
        self.use_amp = train.amp and self.device.type == "cuda"
        self.optimizers = {
            name: torch.optim.SGD(
                net.parameters(), lr=train.lr, momentum=train.momentum,
                weight_decay=train.weight_decay, nesterov=train.nesterov,
            )
            for name, net in method.optimized_networks().items()
        }
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.pos = Position()
        self._stop_reasons: list[str] = []
        self._last_saved = -math.inf

    def request_stop(self, reason: str) -> None:
        """Ask the loop to end after the current evaluation (callbacks call this).

        ``reason`` is :data:`~dhcbench.benchmark.callbacks.EARLY_STOP` or
        :data:`~dhcbench.benchmark.callbacks.PRUNED`; the result reports both.
        """
        self._stop_reasons.append(reason)

    def iterations_per_epoch(self) -> int:
        """Iterations of one epoch: the spec's, else the sampler's natural count."""
        return self.spec.iters_per_epoch or self.sampler.iterations_per_epoch()

    def total_iterations(self) -> int:
        """Iterations of the whole schedule (epochs 0 … ``epochs``)."""
        return (self.spec.epochs + 1) * self.iterations_per_epoch()

    def _plan(self) -> list[tuple[np.ndarray, np.ndarray]]:
        n = self.iterations_per_epoch()
        plan: list[tuple[np.ndarray, np.ndarray]] = []
        while len(plan) < n:
            plan.extend(self.sampler.plan_epoch())
        return plan[:n]

    def state_dict(self) -> dict[str, Any]:
        """The full training state: position, method, optimisers, scaler and every RNG."""
        return {
            "position": self.pos.to_dict(),
            "method": self.method.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "sampler_rng": self.sampler.get_state(),
            **global_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (on resume), moving the method to this device."""
        self.method.load_state_dict(state["method"])
        self.method.to(self.device)
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.set_state(state["sampler_rng"])
        set_global_rng_state(state)
        self.pos = Position.from_dict(state["position"], self.device)

    def _save_last(self, force: bool = True) -> None:
        """Write ``last.pt`` after the callbacks' :meth:`~Callback.on_save`.

        Unless ``force``, only when :data:`LAST_SAVE_INTERVAL_S` have passed since the
        previous write.
        """
        now = time.monotonic()
        if not force and now - self._last_saved < LAST_SAVE_INTERVAL_S:
            return
        for callback in self.callbacks:
            callback.on_save(self)
        checkpoint.save(self.state_dict(), self.ckpt_dir / checkpoint.LAST)
        self._last_saved = now

    def fit(self) -> FitResult:
        """Train from the current position (fresh or loaded) to the end or a requested stop."""
        spec, pos = self.spec, self.pos
        max_epochs = spec.epochs
        if pos.done:
            return self._result(interrupted=False)
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
                        return self._result(interrupted=True)
                    self._step(lr, lam)
                self._end_epoch(lr, lam)
                evaluated = pos.epoch % spec.eval_interval == 0
                if evaluated:
                    self._evaluate(pos.epoch)
                pos.epoch += 1
                pos.index, pos.plan = 0, None
                if self._stop_reasons:
                    break
                if evaluated:
                    self._save_last(force=False)
            pos.done, pos.stopped_early = True, EARLY_STOP in self._stop_reasons
            self._save_last()
        return self._result(interrupted=False)

    def _result(self, interrupted: bool) -> FitResult:
        p = self.pos
        return FitResult(
            best_epoch=p.best_epoch, best_dice=p.best_dice,
            last_epoch=p.epoch - 1 if p.index == 0 else p.epoch,
            stopped_early=p.stopped_early, interrupted=interrupted, iterations=p.global_iter,
            pruned=PRUNED in self._stop_reasons,
        )

    def step(self, lr: float, lam: float) -> None:
        """One training iteration at the current position (``dhcbench bench`` times this).

        Starts the next epoch's batch plan when the current one is used up.
        """
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
        values = {"loss": out.loss, **out.scalars, **out.vectors}
        bad = first_non_finite(values)
        if bad is not None:  # before the step: the weights on disk stay finite
            raise TrainingDiverged(bad, pos.epoch, pos.global_iter)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        self.method.after_optimizer_step(ctx)
        pos.accumulate(values)
        pos.index += 1
        pos.global_iter += 1
        for callback in self.callbacks:
            callback.on_iteration_end(self)

    def _end_epoch(self, lr: float, lam: float) -> None:
        metrics = {"train/lr": lr, "train/lambda": lam, **self.pos.epoch_means(self.class_names)}
        self.log(metrics, self.pos.epoch)

    @torch.inference_mode()
    def validate(self) -> np.ndarray:
        """Hard Dice per foreground class on one centred patch per eval case.

        Returns (K-1,) float64 in %, averaged over cases (reference §5; a class absent from
        both prediction and label scores 50).
        """
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
        if not np.isfinite(mean):
            raise TrainingDiverged("the eval Dice", epoch, pos.global_iter)
        metrics = {f"eval/dice/{n}": float(v)
                   for n, v in zip(self.class_names[1:], dice, strict=True)}
        metrics["eval/dice_mean"] = mean
        improved = mean > pos.best_dice
        if improved:
            pos.best_dice, pos.best_epoch = mean, epoch
        metrics["eval/best_dice_mean"] = pos.best_dice
        self.log(metrics, epoch)
        for callback in self.callbacks:
            callback.on_evaluation_end(self, epoch, dice, improved)
