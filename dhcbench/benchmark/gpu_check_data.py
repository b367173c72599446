"""Data for the GPU check: a synthetic prepared dataset and two samplers for the trainer.

- :func:`prepare_synthetic` writes phantom cases resized to a grid (147×256×256: Synapse in
  the ``dhc2024`` geometry) with :func:`~dhcbench.datasets.storage.write_prepared`.
- :class:`PrefetchSampler` puts a :class:`~dhcbench.datasets.loaders.PatchSampler` behind a
  background thread: the epochs' plans are drawn up front, the thread crops their batches in
  that order into a bounded queue (pinned memory on CUDA, so the trainer's non-blocking copy
  overlaps), and :meth:`PrefetchSampler.batch` records how long the step waited for each.
- :class:`FixedBatches` replays a list of batches, so two trainings (fp32 and AMP) see the
  same ones.
- :class:`Budget` shares the check's time limit among its phases.

Both samplers offer what the :class:`~dhcbench.benchmark.trainer.Trainer` calls on a
sampler (``iterations_per_epoch``, ``plan_epoch``, ``batch``, ``get_state``, ``set_state``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dhcbench.benchmark.bench_parts import grid_spacing, synthetic_case
from dhcbench.datasets.classes import SYNAPSE_CLASSES
from dhcbench.datasets.storage import PreparedCase, PreparedDataset, write_prepared
from dhcbench.interfaces import Batch

Shape3 = tuple[int, int, int]
Plan = list[tuple[np.ndarray, np.ndarray]]


def prepare_synthetic(folder: Path, grid: Shape3, num_labeled: int = 2,
                      num_unlabeled: int = 4) -> tuple[PreparedDataset, list[str], list[str]]:
    """Write ``num_labeled + num_unlabeled`` synthetic cases on ``grid`` under ``folder``.

    Returns the prepared dataset and its (labeled, unlabeled) case ids.
    """
    ids = [f"case_{i + 1:04d}" for i in range(num_labeled + num_unlabeled)]

    def cases():  # noqa: ANN202
        for seed, case_id in enumerate(ids):
            image, label = synthetic_case(grid, seed)
            yield PreparedCase(case_id, image, label, grid_spacing(grid))

    ds = write_prepared(folder, name="synthetic", class_names=SYNAPSE_CLASSES,
                        profile="synthetic", cases=cases(), splits={"train": ids})
    return ds, ids[:num_labeled], ids[num_labeled:]


class Budget:
    """The check's time budget: each phase gets a share of it, never past its end."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def deadline(self, share: float) -> float:
        """The monotonic time at which a phase given ``share`` of the budget stops."""
        return min(self.end, time.monotonic() + share * self.seconds)

    def left(self) -> float:
        """Seconds left in the whole budget."""
        return self.end - time.monotonic()


def _pinned(batch: Batch) -> Batch:
    return Batch(batch.image_l.pin_memory(), batch.label_l.pin_memory(),
                 batch.image_u.pin_memory())


class PrefetchSampler:
    """A sampler whose batches are cropped ahead by a background thread.

    Args:
        inner: the sampler that draws plans and crops (used by the thread only, once
            started).
        epochs: how many epoch plans to draw up front (the trainer asks for them in order).
        depth: batches held ready at most.
        pin: pin the batches' memory (for a CUDA device).
    """

    def __init__(self, inner, epochs: int, depth: int = 4, pin: bool = False) -> None:  # noqa: ANN001
        self.inner = inner
        self._plans = [inner.plan_epoch() for _ in range(epochs)]
        self._next_plan = 0
        self._ready: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pin = pin
        self.waits: list[float] = []
        self.produce_times: list[float] = []
        self._thread = threading.Thread(target=self._work, name="prefetch", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        for plan in self._plans:
            for lab_idx, unl_idx in plan:
                start = time.perf_counter()
                batch = self.inner.batch(lab_idx, unl_idx)
                if self._pin:
                    batch = _pinned(batch)
                self.produce_times.append(time.perf_counter() - start)
                while not self._stop.is_set():
                    try:
                        self._ready.put((lab_idx, unl_idx, batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return

    def iterations_per_epoch(self) -> int:
        """The inner sampler's iterations per epoch."""
        return self.inner.iterations_per_epoch()

    def plan_epoch(self) -> Plan:
        """The next plan drawn up front."""
        plan = self._plans[self._next_plan]
        self._next_plan += 1
        return plan

    def batch(self, lab_idx: np.ndarray, unl_idx: np.ndarray) -> Batch:
        """The next prefetched batch (it must be the one asked for); the wait is recorded."""
        start = time.perf_counter()
        got_l, got_u, batch = self._ready.get()
        self.waits.append(time.perf_counter() - start)
        if not (np.array_equal(got_l, lab_idx) and np.array_equal(got_u, unl_idx)):
            raise RuntimeError("prefetch order differs from the trainer's plan")
        return batch

    def close(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def get_state(self) -> dict:
        """The inner sampler's random state."""
        return self.inner.get_state()

    def set_state(self, state: dict) -> None:
        """Not supported: the plans are drawn up front."""
        raise NotImplementedError("a prefetching sampler cannot be restored")


class FixedBatches:
    """Replays ``batches`` in order, one per iteration, as one epoch."""

    def __init__(self, batches: Sequence[Batch]) -> None:
        self.batches = list(batches)

    def iterations_per_epoch(self) -> int:
        """The number of batches."""
        return len(self.batches)

    def plan_epoch(self) -> Plan:
        """Batch ``i`` as the ``i``-th iteration (its index as the labeled index)."""
        return [(np.array([i]), np.array([], dtype=np.int64)) for i in range(len(self.batches))]

    def batch(self, lab_idx: np.ndarray, unl_idx: np.ndarray) -> Batch:
        """The batch the plan names."""
        del unl_idx
        return self.batches[int(lab_idx[0])]

    def get_state(self) -> dict:
        """Nothing random: an empty state."""
        return {}

    def set_state(self, state: dict) -> None:
        """Nothing to restore."""
        del state


def timed_fetch(sampler, device: torch.device, n: int) -> list[float]:  # noqa: ANN001
    """Seconds per synchronous batch fetch and copy to ``device`` (``n`` fetches)."""
    out = []
    for lab_idx, unl_idx in sampler.plan_epoch() * (n // max(1, sampler.iterations_per_epoch())
                                                    + 1):
        if len(out) == n:
            break
        start = time.perf_counter()
        sampler.batch(lab_idx, unl_idx).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - start)
    return out
