"""SimiS distribution weights (Chen et al., 2022) as adapted by the DHC code."""

from __future__ import annotations

import torch

from dhcbench.methods.losses import class_histogram
from dhcbench.methods.weighting.base import EMAWeighting, weighting
from dhcbench.methods.weighting.functional import ema, simis_weights


@weighting("simis")
class SimiS(EMAWeighting):
    """SimiS distribution weights (reference §8.9).

    Counts the branch's own argmax over the whole batch (labeled and unlabeled), maps them
    with :func:`simis_weights` (``K (max p - p_k)``) and smooths with an EMA (0.99). The
    initial weights are the labeled distribution passed once through that EMA from K·1.
    Both variants are the reference's. State: the EMA'd weights.
    """

    title = "SimiS"

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        """One EMA step from K·1 towards the SimiS weights of the labeled counts (K,).

        Returns (K,) float32.
        """
        k = self.num_classes
        start = torch.full((k,), float(k), dtype=torch.float64, device=labeled_counts.device)
        self.weights = ema(start, simis_weights(labeled_counts), self.momentum)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        """Smooth in the weights of the argmax histogram of ``logits_l`` and ``logits_u``.

        Either may be None (not both); each is (B, K, D, H, W). ``labels_l`` is ignored;
        returns (K,) float32.
        """
        return self.observe(logits_l=logits_l, logits_u=logits_u)

    def observe(self, *, logits_l=None, labels_l=None, logits_u=None,  # noqa: ANN001
                argmax_l=None, argmax_u=None) -> torch.Tensor:
        """:meth:`update` from ``argmax_l`` / ``argmax_u`` (B, D, H, W) where given."""
        parts = [a for a in (self._argmax(logits_l, argmax_l), self._argmax(logits_u, argmax_u))
                 if a is not None]
        if not parts:
            raise ValueError("SimiS.update needs logits_l and/or logits_u")
        counts = sum(class_histogram(a, self.num_classes).double() for a in parts)
        return self.smooth(simis_weights(counts))  # type: ignore[arg-type]
