"""``dhcbench bench``: each method's training step against its own model floor.

Each method is built with the run spec's settings and fed batches from the dataset's sampler
(2 labeled + 2 unlabeled patches by default); its step is the trainer's own
(:meth:`Trainer.step`: the batch, forward, losses, backward, one optimiser step per network,
``after_optimizer_step``) at the first epoch's learning rate and the full λ.

The **model floor** (:class:`ModelFloor`) is what no implementation of the method can go
below: the same network objects (:meth:`Method.optimized_networks`, on the same device, with
the same threads and memory format), each run forward on the same kind of batch (labeled ⊕
unlabeled, fetched from the same sampler and placed as the trainer places it — the fetch is
timed on both sides), plain ``F.cross_entropy`` of each network's logits
on the labeled half against the labels, the sum backward, one SGD step per network with the
trainer's optimiser settings (and its AMP scaler on CUDA). A network whose forward returns
several outputs (URPC's deep supervision, DST's three decoders) contributes its first, main
logits; a network without a forward of its own (SS-Net's MLP heads, which act on voxel
features) is not part of the floor. A method with no such network has no floor (n/a).

Method and floor steps alternate in the same process: after warm-up steps of both, each
round times ``steps`` method steps and then ``steps`` floor steps (CUDA is synchronised
around each); a round's ratio is the median method step over the median floor step.
Reported: the median ratio over the rounds with its spread (min–max and quartiles), the
median step and floor times, and peak memory (CUDA: peak allocated during the method's and
the floor's steps; CPU: the process's peak resident memory so far). Nothing is written to
MLflow.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dhcbench.benchmark.building import build_method
from dhcbench.benchmark.planning import RunPlan, plan_run
from dhcbench.benchmark.runner import training_sampler
from dhcbench.benchmark.train_state import seed_everything
from dhcbench.benchmark.trainer import Trainer
from dhcbench.interfaces import Batch


@dataclass(frozen=True)
class Spread:
    """A median over rounds with its spread: min, max and the quartiles."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    rounds: int

    @staticmethod
    def of(values: Sequence[float]) -> Spread:
        """The spread of one value per round (at least one)."""
        v = np.asarray(values, dtype=np.float64)
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        return Spread(float(med), float(v.min()), float(v.max()), float(q1), float(q3), len(v))

    def text(self, fmt: str = ".2f") -> str:
        """``×1.05 (1.03–1.09)``-style: the median and the min–max over the rounds."""
        return f"×{self.median:{fmt}} ({self.low:{fmt}}–{self.high:{fmt}})"


@dataclass(frozen=True)
class StepTiming:
    """One method's step against its floor.

    Times in seconds, memory in MiB; ``ratio`` is step / floor per round (None without a
    floor, as ``floor_median_s`` and ``floor_peak_mb``; the latter is CUDA only).
    """

    method: str
    median_s: float
    min_s: float
    peak_mb: float
    floor_median_s: float | None = None
    ratio: Spread | None = None
    floor_peak_mb: float | None = None
    rounds: int = 0
    steps_per_round: int = 0

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values (the ratio as a nested dict)."""
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA peak allocated, else the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one call of ``fn`` in seconds, CUDA synchronised before and after."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def maps_images(net: nn.Module) -> bool:
    """Whether ``net`` has a forward of its own (an image-to-logits network)."""
    return type(net).forward is not nn.Module.forward


def main_logits(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """A network's main logits: the output itself, or the first of several outputs."""
    return out if isinstance(out, torch.Tensor) else out[0]


class ModelFloor:
    """The floor step of a trainer's method (see the module docstring).

    Holds the method's own image networks (the same objects the trainer steps) and one SGD
    optimiser per network with the trainer's settings; batches come from the trainer's
    sampler, placed as the trainer places them.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.networks = {name: net for name, net in trainer.method.optimized_networks().items()
                         if maps_images(net)}
        spec = trainer.spec
        self.optimizers = [
            torch.optim.SGD(net.parameters(), lr=spec.lr, momentum=spec.momentum,
                            weight_decay=spec.weight_decay, nesterov=spec.nesterov)
            for net in self.networks.values()
        ]
        self.scaler = torch.amp.GradScaler("cuda", enabled=trainer.use_amp)
        self._plan: list[tuple[np.ndarray, np.ndarray]] = []

    def next_batch(self) -> Batch:
        """The next batch of the sampler's plan, on the trainer's device and memory format."""
        trainer = self.trainer
        if not self._plan:
            self._plan = list(trainer.sampler.plan_epoch())
        lab_idx, unl_idx = self._plan.pop(0)
        batch = trainer.sampler.batch(lab_idx, unl_idx).to(trainer.device)
        if trainer.spec.channels_last:
            batch.image_l = batch.image_l.contiguous(memory_format=torch.channels_last_3d)
            batch.image_u = batch.image_u.contiguous(memory_format=torch.channels_last_3d)
        return batch

    def step(self, lr: float | None = None) -> torch.Tensor:
        """One floor step; returns the summed CE, detached (not read back to the host)."""
        batch = self.next_batch()
        device = self.trainer.device
        for opt in self.optimizers:
            if lr is not None:
                opt.param_groups[0]["lr"] = lr
            opt.zero_grad(set_to_none=True)
        x, n_l = batch.images(), batch.n_l
        with torch.autocast(device.type, enabled=self.trainer.use_amp):
            loss = sum(F.cross_entropy(main_logits(net.train()(x))[:n_l], batch.label_l)
                       for net in self.networks.values())
        self.scaler.scale(loss).backward()
        for opt in self.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        return loss.detach()


def build_trainer(plan: RunPlan) -> Trainer:
    """The plan's first spec's method, seeded and set up, in a trainer that logs nothing."""
    spec = plan.specs[0]
    seed_everything(spec.seed)
    method = build_method(spec, plan.dataset_spec)
    sampler = training_sampler(spec, plan, method)
    return Trainer(spec.train, method, sampler, [], plan.dataset_spec.class_names,
                   Path(spec.tracking.out_dir), log=lambda metrics, step: None)


def _phase(fn: Callable[[], Any], n: int, device: torch.device) -> tuple[list[float], float]:
    """``n`` timed calls and the CUDA peak memory (MiB) during them (0.0 on a CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [timed(fn, device) for _ in range(n)]
    return times, (peak_mb(device) if device.type == "cuda" else 0.0)


def time_method(plan: RunPlan, steps: int, warmup: int, rounds: int = 5) -> StepTiming:
    """The plan's method step against its floor over ``rounds`` alternating rounds.

    ``warmup`` untimed steps of each first; then per round ``steps`` method steps and
    ``steps`` floor steps, each timed.
    """
    spec = plan.specs[0]
    trainer = build_trainer(plan)
    device = trainer.device
    lr, lam = spec.train.lr, spec.train.unsup_weight
    floor = ModelFloor(trainer) if any(maps_images(n) for n in
                                       trainer.method.optimized_networks().values()) else None
    for _ in range(warmup):
        trainer.step(lr, lam)
        if floor is not None:
            floor.step(lr)
    method_times: list[float] = []
    floor_times: list[float] = []
    ratios: list[float] = []
    peaks = [0.0, 0.0]
    for _ in range(rounds):
        m, m_peak = _phase(lambda: trainer.step(lr, lam), steps, device)
        method_times += m
        peaks[0] = max(peaks[0], m_peak)
        if floor is not None:
            f, f_peak = _phase(lambda: floor.step(lr), steps, device)
            floor_times += f
            peaks[1] = max(peaks[1], f_peak)
            ratios.append(statistics.median(m) / statistics.median(f))
    cuda = device.type == "cuda"
    return StepTiming(
        method=spec.method.name,
        median_s=statistics.median(method_times),
        min_s=min(method_times),
        peak_mb=peaks[0] if cuda else peak_mb(device),
        floor_median_s=statistics.median(floor_times) if floor_times else None,
        ratio=Spread.of(ratios) if ratios else None,
        floor_peak_mb=peaks[1] if cuda and floor is not None else None,
        rounds=rounds,
        steps_per_round=steps,
    )


def bench_methods(
    methods: Sequence[str], dataset: str, ratio: float, layers: list[dict], steps: int,
    warmup: int, on_result: Callable[[StepTiming], None] | None = None, rounds: int = 5,
) -> list[StepTiming]:
    """Time each method in turn against its floor (the dataset is prepared once).

    ``steps`` is the number of timed steps per round of each side (method, floor).
    """
    results = []
    for name in methods:
        plan = plan_run(name, dataset, ratio, [0], layers)
        result = time_method(plan, steps, warmup, rounds)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
