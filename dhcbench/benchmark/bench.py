"""``dhcbench bench``: time one training step of each method on real phantom patches.

Each method is built with the run spec's settings, fed batches from the dataset's sampler
(2 labeled + 2 unlabeled patches by default) and stepped by the trainer itself
(:meth:`Trainer.step`: forward, backward, one optimiser step per network,
``after_optimizer_step``), at the first epoch's learning rate and the full λ. Reported per method:
the median wall time of the timed steps after warm-up steps, and the peak resident memory of
the process (CUDA: peak allocated) so far. Nothing is written to MLflow.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dhcbench.benchmark.planning import RunPlan, build_method, plan_run
from dhcbench.benchmark.runner import training_sampler
from dhcbench.benchmark.train_state import seed_everything
from dhcbench.benchmark.trainer import Trainer


@dataclass(frozen=True)
class StepTiming:
    """One method's step time (median and fastest, seconds) and peak memory (MiB)."""

    method: str
    median_s: float
    min_s: float
    peak_mb: float


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_method(plan: RunPlan, steps: int, warmup: int) -> StepTiming:
    """Median step time of the plan's method over ``steps`` steps after ``warmup``."""
    spec = plan.specs[0]
    seed_everything(spec.seed)
    method = build_method(spec, plan.dataset_spec)
    sampler = training_sampler(spec, plan, method)
    trainer = Trainer(spec.train, method, sampler, [], plan.dataset_spec.class_names,
                      Path(spec.tracking.out_dir), log=lambda metrics, step: None)
    device = trainer.device
    times = []
    for i in range(steps + warmup):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        trainer.step(spec.train.lr, spec.train.unsup_weight)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return StepTiming(spec.method.name, statistics.median(times), min(times), _peak_mb(device))


def bench_methods(
    methods: Sequence[str], dataset: str, ratio: float, layers: list[dict], steps: int,
    warmup: int, on_result: Callable[[StepTiming], None] | None = None,
) -> list[StepTiming]:
    """Time each method in turn (the dataset is prepared once)."""
    results = []
    for name in methods:
        plan = plan_run(name, dataset, ratio, [0], layers)
        result = time_method(plan, steps, warmup)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
