"""Uniform weights: the unweighted losses of CPS and of every 'Org' branch."""

from __future__ import annotations

import torch

from dhcbench.methods.weighting.base import WeightingStrategy, weighting


@weighting("uniform")
class Uniform(WeightingStrategy):
    """All-ones weights: the unweighted losses of CPS and the other 'Org' branches."""

    title = "Org"
    adaptive = False

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        """Ones (K,) float32 on the counts' device, whatever the counts."""
        self.weights = torch.ones(self.num_classes, dtype=torch.float64,
                                  device=labeled_counts.device)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        """Return the ones (K,) float32; the batch is not read."""
        return self.current()
