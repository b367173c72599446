"""CLD's fixed class weights (Lin et al., MICCAI 2022)."""

from __future__ import annotations

import torch

from dhcbench.errors import UserError
from dhcbench.methods.weighting.base import WeightingStrategy, weighting
from dhcbench.methods.weighting.functional import cld_weights


@weighting("cld")
class CLDWeights(WeightingStrategy):
    """CLD's fixed class weights (reference §8.11).

    :func:`cld_weights`, ``(max N / N_k) ** (1/3)`` from the labeled ground truth,
    background included, no epsilon, no ×K; ``update`` returns them unchanged. A class
    absent from the labeled set would get an infinite weight: that is refused with an error
    (draw the labeled cases with ``data.cover_classes=true``).
    """

    title = "CLD"
    requires_every_class = True
    adaptive = False

    def __init__(self, num_classes: int, power: float = 1.0 / 3.0, variant: str = "reference"
                 ) -> None:
        super().__init__(num_classes, variant)
        self.power = power

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        """Fix the weights from the labeled counts (K,); a zero count raises UserError."""
        n = labeled_counts.double()
        if bool((n == 0).any()):
            missing = [int(i) for i in torch.nonzero(n == 0).flatten()]
            raise UserError(
                f"CLD weights: class(es) {missing} are absent from the labeled set, which gives"
                " an infinite weight; use data.cover_classes=true or another ratio"
            )
        self.weights = cld_weights(n, self.power)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        """Return the weights fixed by :meth:`reset` (K,) float32; the batch is not read."""
        return self.current()
