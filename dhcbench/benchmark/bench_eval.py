"""``dhcbench bench --part eval``: one case's metrics, ``case_metrics`` against medpy.

The case is synthetic: the ground truth is a phantom case's 13 organs resized to the grid
(:func:`~dhcbench.benchmark.bench_parts.synthetic_case`); the prediction perturbs it the way
a trained network errs — six organs grown (into the background) or shrunk by two voxels,
the whole map shifted by (1, 2, -1) voxels, and one small organ missed (an empty
prediction, so the empty-mask conventions are exercised): Dice 60–90 % on the other
organs.

The reference side is what the reference evaluation does, per foreground class on the whole
volume with ``medpy.metric.binary``: ``dc`` and ``asd`` (the dhc contract, in voxels) and
``assd`` and ``hd95`` with the voxel spacing (the rigorous contract), with the empty-mask
conventions of :mod:`dhcbench.evaluation.metrics`. Each round times :func:`case_metrics`
and then the medpy side; the ratio per round is medpy's time over ours. The two results are
compared key by key: identical means equal to a relative 1e-9 (what the metric tests pin),
and the largest absolute difference is reported.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from dhcbench.benchmark.bench import Spread
from dhcbench.benchmark.bench_parts import AMOS_GRID, Shape3, grid_spacing, synthetic_case
from dhcbench.evaluation.metrics import DHC_EMPTY_ASD, case_metrics

NUM_CLASSES = 14
#: The organ the prediction misses (right adrenal gland, one of the smallest).
MISSED_CLASS = 12
Metrics = dict[tuple[str, str, int], float]


@dataclass(frozen=True)
class EvalTiming:
    """``case_metrics`` against medpy on one case.

    Times in ms (median over rounds); ``ratio``: medpy over ours per round.
    """

    grid: Shape3
    ours_ms: float
    medpy_ms: float
    ratio: Spread
    identical: bool
    max_abs_diff: float
    values: int
    rounds: int

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        return asdict(self)


def perturbed_prediction(seed: int = 0, grid: Shape3 = AMOS_GRID
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, ground truth) uint8 (D, H, W) label maps on ``grid`` (see module)."""
    gt = synthetic_case(grid, seed)[1]
    rng = np.random.default_rng([seed, 13])
    pred = gt.copy()
    ball = ndimage.generate_binary_structure(3, 1)
    for c in rng.permutation(np.arange(1, NUM_CLASSES))[:6]:
        mask = pred == c
        if rng.random() < 0.5:
            grown = ndimage.binary_dilation(mask, ball, iterations=2) & (pred == 0)
            pred[grown] = c
        else:
            pred[mask & ~ndimage.binary_erosion(mask, ball, iterations=2)] = 0
    pred = np.roll(pred, (1, 2, -1), axis=(0, 1, 2))
    pred[pred == MISSED_CLASS] = 0
    return pred, gt


def medpy_metrics(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                  spacing: tuple[float, float, float]) -> Metrics:
    """:func:`case_metrics`' dict computed with medpy on the whole volume, class by class."""
    from medpy.metric import binary as mb

    nan = math.nan
    out: Metrics = {}
    for c in range(1, num_classes):
        p, g = pred == c, gt == c
        has_p, has_g = bool(p.any()), bool(g.any())
        if not (has_p or has_g):
            out.update({("dhc", "dice", c): 1.0, ("dhc", "asd", c): 0.0,
                        ("rigorous", "dice", c): nan, ("rigorous", "asd", c): nan,
                        ("rigorous", "hd95", c): nan})
        elif not (has_p and has_g):
            out.update({("dhc", "dice", c): 0.0, ("dhc", "asd", c): DHC_EMPTY_ASD,
                        ("rigorous", "dice", c): 0.0, ("rigorous", "asd", c): nan,
                        ("rigorous", "hd95", c): nan})
        else:
            dice = 100.0 * mb.dc(p, g)
            out.update({("dhc", "dice", c): dice, ("dhc", "asd", c): mb.asd(p, g),
                        ("rigorous", "dice", c): dice,
                        ("rigorous", "asd", c): mb.assd(p, g, voxelspacing=spacing),
                        ("rigorous", "hd95", c): mb.hd95(p, g, voxelspacing=spacing)})
    return out


def compare(ours: Metrics, reference: Metrics, rel: float = 1e-9) -> tuple[bool, float]:
    """(identical to ``rel`` relative, largest absolute difference); NaN equals NaN."""
    if set(ours) != set(reference):
        return False, math.inf
    same, worst = True, 0.0
    for key, ref in reference.items():
        val = ours[key]
        if math.isnan(ref) or math.isnan(val):
            same = same and math.isnan(ref) and math.isnan(val)
            continue
        diff = abs(val - ref)
        worst = max(worst, float(diff))
        same = same and bool(diff <= rel * max(1.0, abs(ref)))
    return same, float(worst)


def bench_eval(grid: Shape3 = AMOS_GRID, rounds: int = 5, seed: int = 0) -> EvalTiming:
    """Time ``case_metrics`` and medpy on one synthetic case, alternating per round."""
    pred, gt = perturbed_prediction(seed, grid)
    spacing = grid_spacing(grid)
    ours_t, medpy_t, ratios = [], [], []
    ours: Metrics = {}
    reference: Metrics = {}
    for _ in range(rounds):
        start = time.perf_counter()
        ours = case_metrics(pred, gt, NUM_CLASSES, spacing)
        mid = time.perf_counter()
        reference = medpy_metrics(pred, gt, NUM_CLASSES, spacing)
        end = time.perf_counter()
        ours_t.append(mid - start)
        medpy_t.append(end - mid)
        ratios.append((end - mid) / (mid - start))
    identical, worst = compare(ours, reference)
    return EvalTiming(grid, 1e3 * statistics.median(ours_t), 1e3 * statistics.median(medpy_t),
                      Spread.of(ratios), identical, worst, len(reference), rounds)
