"""SimiS distribution weights (Chen et al., 2022) as adapted by the DHC code."""

from __future__ import annotations

import torch

from dhcbench.methods.weighting.base import WeightingStrategy, weighting
from dhcbench.methods.weighting.functional import argmax_histogram, ema, simis_weights


@weighting("simis")
class SimiS(WeightingStrategy):
    """SimiS distribution weights (reference §8.9).

    Counts the branch's own argmax over the whole batch (labeled and unlabeled), maps them
    with :func:`simis_weights` (``K (max p - p_k)``) and smooths with an EMA (0.99). The
    initial weights are the labeled distribution passed once through that EMA from K·1.
    Both variants are the reference's. State: the EMA'd weights.
    """

    title = "SimiS"

    def __init__(
        self, num_classes: int, momentum: float = 0.99, variant: str = "reference"
    ) -> None:
        super().__init__(num_classes, variant)
        self.momentum = momentum

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        k = self.num_classes
        start = torch.full((k,), float(k), dtype=torch.float64, device=labeled_counts.device)
        self.weights = ema(start, simis_weights(labeled_counts), self.momentum)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        parts = [t for t in (logits_l, logits_u) if t is not None]
        if not parts:
            raise ValueError("SimiS.update needs logits_l and/or logits_u")
        counts = sum(argmax_histogram(t) for t in parts)
        w = simis_weights(counts)  # type: ignore[arg-type]
        self.weights = ema(self.weights.to(w.device), w, self.momentum)
        return self.current()
