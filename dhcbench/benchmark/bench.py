"""``dhcbench bench``: time one training step of each method on real phantom patches.

Each method is built with the run spec's settings, fed batches from the dataset's sampler
(2 labeled + 2 unlabeled patches by default) and stepped like the trainer does (forward,
backward, one optimiser step per network, ``after_optimizer_step``). Reported per method:
the median wall time of the timed steps after warm-up steps, and the peak resident memory of
the process (CUDA: peak allocated) so far. Nothing is written to MLflow.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from dhcbench.benchmark.runner import RunPlan, build_method, labeled_counts, plan_run
from dhcbench.benchmark.trainer import resolve_device, seed_everything
from dhcbench.datasets.loaders import PatchSampler
from dhcbench.methods import METHODS
from dhcbench.methods.base import SetupContext, StepContext


@dataclass(frozen=True)
class StepTiming:
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
    device = resolve_device(spec.train.device)
    seed_everything(spec.seed)
    info = METHODS.get(spec.method.name)
    method = build_method(spec, plan.dataset_spec)
    labeled = plan.split.train if info.data_mode == "all" else plan.split.labeled
    unlabeled = () if info.data_mode == "all" else plan.split.unlabeled
    sampler = PatchSampler(plan.dataset, plan.dataset_spec, labeled, unlabeled,
                           batch_labeled=spec.train.batch_labeled,
                           batch_unlabeled=spec.train.batch_unlabeled, flip=False,
                           seed=spec.seed, mode=info.data_mode)
    method.setup(labeled_counts(plan, info.data_mode),
                 SetupContext(len(plan.split.unlabeled), sampler.iterations_per_epoch()))
    method.to(device)
    optimisers = [torch.optim.SGD(n.parameters(), lr=spec.train.lr, momentum=0.9,
                                  nesterov=True, weight_decay=3e-5)
                  for n in method.optimized_networks().values()]
    plan_iter = iter(sampler.plan_epoch() * (steps + warmup))
    times = []
    method.train()
    for i in range(steps + warmup):
        batch = sampler.batch(*next(plan_iter)).to(device)
        ctx = StepContext(1, i, spec.train.unsup_weight, spec.train.epochs, spec.train.lr)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, enabled=spec.train.amp and device.type == "cuda"):
            out = method.training_step(batch, ctx)
        for opt in optimisers:
            opt.zero_grad(set_to_none=True)
        out.loss.backward()
        for opt in optimisers:
            opt.step()
        method.after_optimizer_step(ctx)
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
