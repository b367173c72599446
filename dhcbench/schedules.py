"""Per-epoch schedules of the reference training loop (reference §5).

Both are evaluated once per epoch and lagged by one epoch: epoch 0 and epoch 1 use the
value at t = 0, epoch e >= 1 uses t = e - 1. The loop runs ``max_epochs + 1`` epochs, so the
learning rate never reaches 0.
"""

from __future__ import annotations

import math


def schedule_time(epoch: int) -> int:
    """The t at which the schedules are evaluated during ``epoch`` (lagged by one)."""
    return max(epoch - 1, 0)


def poly_lr(base_lr: float, epoch: int, max_epochs: int, power: float = 0.9) -> float:
    """``base * (1 - t / E) ** power`` with t = :func:`schedule_time` (nnU-Net's poly)."""
    if max_epochs <= 0:
        return base_lr
    t = min(schedule_time(epoch), max_epochs)
    return base_lr * (1.0 - t / max_epochs) ** power


def sigmoid_rampup(t: float, length: float) -> float:
    """The reference's 'Gaussian' ramp-up (Laine & Aila) at time ``t`` of ``length``.

    ``exp(-5 (1 - clip(t, 0, T) / T) ** 2)`` with T = ``length``; 1 when ``length`` is 0.
    """
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(t, 0.0), length) / length
    return float(math.exp(-5.0 * phase * phase))


def unsup_weight(weight: float, epoch: int, rampup_epochs: int | None, rampup: bool = True
                 ) -> float:
    """λ_t for ``epoch``: ``weight * sigmoid_rampup(t, T)``; T defaults to the whole run."""
    if not rampup:
        return weight
    return weight * sigmoid_rampup(schedule_time(epoch), float(rampup_epochs or 0))
