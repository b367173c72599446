"""The GPU check (``make gpu-check``): the paper's configuration on an accelerator, measured.

``python -m dhcbench.benchmark.gpu_check [--steps 300] [--max-seconds 420] [--out gpu-check]``

On a CUDA machine it trains DHC (two V-Nets) with the paper's settings — 64×128×128 patches,
2 labeled + 2 unlabeled per step, AMP on — first at 32 base filters, then at 16, on a
synthetic prepared dataset of Synapse size (147×256×256, written to a temporary folder),
through the :class:`~dhcbench.benchmark.trainer.Trainer` itself (which owns device, AMP and
``torch.compile``). For each filter count it reports:

- the step time (median after warm-up) and the peak GPU memory allocated;
- the data loader against the step: batches are cropped by a background thread into a
  bounded queue of pinned batches (:class:`~.gpu_check_data.PrefetchSampler`); the time each
  step waited for its batch (median, 95th percentile, share of the step time), the time one
  batch takes to produce, and a synchronous fetch-and-copy for comparison;
- sliding-window inference of one volume (the device's default inference options);
- ``torch.compile`` on against off (the compiled step's median, and its first step, which
  includes compilation).

Once, at the first filter count: AMP against fp32 over the first 20 steps from the same seed
on the same batches — the relative difference of the two loss curves.

Everything stops within ``--max-seconds`` (phases get a share each; a phase that would not
fit is skipped and says so). Written to ``--out``: ``gpu-check.json`` and ``gpu-check.md``.
``--reduced`` (automatic without CUDA) runs a tiny CPU form — 4 filters, 16×32×32 patches,
5 steps, no AMP, no compilation — with the same fields, so it can be tested anywhere.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from dhcbench.benchmark.bench import peak_mb, timed
from dhcbench.benchmark.bench_parts import PATCH, SYNAPSE_GRID, synthetic_spec
from dhcbench.benchmark.gpu_check_data import (
    Budget,
    FixedBatches,
    PrefetchSampler,
    prepare_synthetic,
    timed_fetch,
)
from dhcbench.benchmark.gpu_check_report import write_outputs
from dhcbench.benchmark.spec import EvalSpec, TrainSpec
from dhcbench.benchmark.train_state import seed_everything
from dhcbench.benchmark.trainer import Trainer
from dhcbench.datasets.classes import SYNAPSE_CLASSES
from dhcbench.datasets.loaders import PatchSampler, normalised_image
from dhcbench.evaluation.inference import predict_case_probs, resolve_device
from dhcbench.interfaces import SetupContext
from dhcbench.methods import METHODS

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class CheckConfig:
    """What the check runs: geometry, networks, steps, precision and the time budget."""

    grid: Shape3 = SYNAPSE_GRID
    patch: Shape3 = PATCH
    filters: tuple[int, ...] = (32, 16)
    steps: int = 300
    warmup: int = 5
    amp: bool = True
    compile: bool = True
    amp_steps: int = 20
    max_seconds: float = 420.0
    reduced: bool = False
    device: str = "cuda"
    seed: int = 0


#: The tiny CPU form of ``--reduced``.
REDUCED = CheckConfig(grid=(24, 48, 48), patch=(16, 32, 32), filters=(4,), steps=5, warmup=1,
                      amp=False, compile=False, amp_steps=3, reduced=True, device="cpu")


@dataclass
class Data:
    """The prepared dataset and what the phases share."""

    ds: Any
    labeled: list[str]
    unlabeled: list[str]
    cfg: CheckConfig
    device: torch.device

    def sampler(self) -> PatchSampler:
        """A fresh patch sampler of the labeled and unlabeled cases (2 + 2 per batch)."""
        return PatchSampler(self.ds, synthetic_spec(self.cfg.patch), self.labeled,
                            self.unlabeled, batch_labeled=2, batch_unlabeled=2, flip=False,
                            seed=self.cfg.seed)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


def make_trainer(data: Data, sampler: Any, filters: int, *, amp: bool, compile_: bool
                 ) -> Trainer:
    """DHC at ``filters`` base filters, seeded and set up, in a trainer over ``sampler``."""
    cfg = data.cfg
    seed_everything(cfg.seed)
    method = METHODS.get("dhc").build(num_classes=len(SYNAPSE_CLASSES), in_channels=1,
                                      base_filters=filters, variant="reference", kwargs={})
    method.setup(torch.as_tensor(data.ds.class_counts(data.labeled), dtype=torch.int64),
                 SetupContext(num_unlabeled=len(data.unlabeled),
                              iterations_per_epoch=sampler.iterations_per_epoch()))
    train = TrainSpec(base_filters=filters, amp=amp, compile=compile_, device=cfg.device,
                      epochs=10**6, patience=None)
    ckpt = Path(tempfile.gettempdir()) / "dhcbench-gpu-check-unused"
    return Trainer(train, method, sampler, [], SYNAPSE_CLASSES, ckpt, log=lambda m, s: None)


def train_phase(data: Data, filters: int, deadline: float, compile_: bool = False
                ) -> tuple[dict[str, Any], Trainer]:
    """Up to ``steps`` (+ warm-up) prefetched training steps, stopping at ``deadline``."""
    cfg, device = data.cfg, data.device
    inner = data.sampler()
    sync = timed_fetch(inner, device, 5)
    per_epoch = inner.iterations_per_epoch()
    sampler = PrefetchSampler(inner, math.ceil((cfg.steps + cfg.warmup) / per_epoch) + 1,
                              pin=device.type == "cuda")
    trainer = make_trainer(data, sampler, filters, amp=cfg.amp, compile_=compile_)
    spec = trainer.spec
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    try:
        for i in range(cfg.steps + cfg.warmup):
            if i > cfg.warmup and time.monotonic() > deadline:
                break
            times.append(timed(lambda: trainer.step(spec.lr, spec.unsup_weight), device))
    finally:
        sampler.close()
    skip = min(cfg.warmup, len(times) - 1)
    steps, waits = times[skip:], sampler.waits[skip:len(times)]
    step_ms = 1e3 * statistics.median(steps)
    produce_ms = 1e3 * statistics.median(sampler.produce_times)
    return {
        "filters": filters, "compile": compile_, "steps": len(steps), "warmup": skip,
        "first_step_s": times[0], "step_ms": step_ms,
        "step_ms_p90": 1e3 * _percentile(steps, 90), "peak_mb": peak_mb(device),
        "wait_ms": 1e3 * statistics.median(waits),
        "wait_ms_p95": 1e3 * _percentile(waits, 95),
        "wait_share": sum(waits) / sum(steps),
        "produce_ms": produce_ms, "sync_fetch_ms": 1e3 * statistics.median(sync),
        "loader_headroom": step_ms / produce_ms,
    }, trainer


def inference_phase(data: Data, trainer: Trainer, deadline: float) -> dict[str, Any]:
    """Sliding-window inference of one volume: a warm-up, then timed volumes to the deadline."""
    cfg, device = data.cfg, data.device
    image = normalised_image(data.ds, synthetic_spec(cfg.patch), data.labeled[0])
    method = trainer.method
    method.eval()

    def run() -> None:
        predict_case_probs(method.predict, image, synthetic_spec(cfg.patch), EvalSpec(),
                           device, amp=cfg.amp)

    times = [timed(run, device)]
    while len(times) < 4 and time.monotonic() < deadline:
        times.append(timed(run, device))
    method.train()
    measured = times[1:] or times
    return {"volumes": len(measured), "s_per_volume": statistics.median(measured),
            "grid": list(cfg.grid)}


def amp_phase(data: Data, filters: int) -> dict[str, Any]:
    """fp32 against AMP over the first ``amp_steps`` steps, same seed and batches."""
    cfg = data.cfg
    inner = data.sampler()
    plan = []
    while len(plan) < cfg.amp_steps:
        plan += inner.plan_epoch()
    batches = FixedBatches([inner.batch(lab, unl) for lab, unl in plan[:cfg.amp_steps]])
    curves = {}
    for amp in (False, True):
        trainer = make_trainer(data, batches, filters, amp=amp, compile_=False)
        losses: list[float] = []
        step_fn = trainer.method.training_step

        def recording(batch, ctx, step_fn=step_fn, losses=losses):  # noqa: ANN001, ANN202
            out = step_fn(batch, ctx)
            losses.append(float(out.loss.detach()))
            return out

        trainer.method.training_step = recording  # type: ignore[method-assign]
        seed_everything(cfg.seed)
        for _ in range(cfg.amp_steps):
            trainer.step(trainer.spec.lr, trainer.spec.unsup_weight)
        curves["amp" if amp else "fp32"] = losses
    rel = [abs(a - f) / max(abs(f), 1e-12) for a, f in zip(curves["amp"], curves["fp32"],
                                                           strict=True)]
    return {"filters": filters, "steps": cfg.amp_steps, "amp_active": cfg.amp and
            data.device.type == "cuda", "max_rel_diff": max(rel),
            "mean_rel_diff": statistics.fmean(rel), "final_rel_diff": rel[-1], **curves}


def _compile_phase(data: Data, filters: int, eager: dict[str, Any], budget: Budget,
                   share: float) -> dict[str, Any]:
    if not data.cfg.compile:
        return {"skipped": "reduced form (no compilation)" if data.cfg.reduced
                else "--no-compile"}
    if budget.left() < 0.1 * budget.seconds:
        return {"skipped": "time budget used up"}
    compiled, _ = train_phase(data, filters, budget.deadline(share), compile_=True)
    return {"eager_step_ms": eager["step_ms"], "compiled_step_ms": compiled["step_ms"],
            "speedup": eager["step_ms"] / compiled["step_ms"], "steps": compiled["steps"],
            "first_step_s": compiled["first_step_s"]}


def run_check(cfg: CheckConfig, workdir: Path) -> dict[str, Any]:
    """Every phase of the check; the JSON document (see the module docstring)."""
    start = time.monotonic()
    budget = Budget(cfg.max_seconds)
    device = resolve_device(cfg.device)
    ds, labeled, unlabeled = prepare_synthetic(workdir / "synthetic", cfg.grid)
    data = Data(ds, labeled, unlabeled, cfg, device)
    runs, amp = [], None
    shares = {"train": 0.45 / len(cfg.filters), "infer": 0.05 / len(cfg.filters),
              "compile": 0.3 / len(cfg.filters)}
    for i, filters in enumerate(cfg.filters):
        result, trainer = train_phase(data, filters, budget.deadline(shares["train"]))
        result["inference"] = inference_phase(data, trainer, budget.deadline(shares["infer"]))
        del trainer
        if i == 0:
            amp = amp_phase(data, filters)
        result["torch_compile"] = _compile_phase(data, filters, result, budget,
                                                 shares["compile"])
        runs.append(result)
    return {
        "config": {**asdict(cfg), "batch": "2 labeled + 2 unlabeled", "method": "dhc"},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "runs": runs, "amp_agreement": amp,
        "elapsed_s": time.monotonic() - start,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m dhcbench.benchmark.gpu_check",
                                description="The paper's configuration on a GPU, measured.")
    p.add_argument("--steps", type=int, default=300, help="timed training steps per run")
    p.add_argument("--max-seconds", type=float, default=420.0, help="time budget, all phases")
    p.add_argument("--out", type=Path, default=Path("gpu-check"), help="output folder")
    p.add_argument("--reduced", action="store_true", help="the tiny CPU form")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile on/off")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> CheckConfig:
    """The configuration: the paper's on CUDA, :data:`REDUCED` with ``--reduced`` or no CUDA."""
    reduced = args.reduced or not torch.cuda.is_available()
    cfg = REDUCED if reduced else CheckConfig()
    cfg = replace(cfg, max_seconds=args.max_seconds,
                  steps=min(args.steps, REDUCED.steps) if reduced else args.steps)
    return replace(cfg, compile=False) if args.no_compile else cfg


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the check and write ``gpu-check.json`` and ``gpu-check.md`` to ``--out``."""
    args = parse_args(argv)
    cfg = config_from_args(args)
    if cfg.reduced and not args.reduced:
        print("no CUDA device: running the reduced CPU form")
    with tempfile.TemporaryDirectory(prefix="dhcbench-gpu-check-") as tmp:
        doc = run_check(cfg, Path(tmp))
    paths = write_outputs(doc, args.out)
    print(paths[1].read_text())
    return doc


if __name__ == "__main__":
    main()
