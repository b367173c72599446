"""DistDW: distribution-aware debiasing weighting (DHC, Wang & Li, MICCAI 2023, Eq. 3–4)."""

from __future__ import annotations

import torch

from dhcbench.methods.losses import class_histogram
from dhcbench.methods.weighting.base import EMAWeighting, weighting
from dhcbench.methods.weighting.functional import distdw_weights


@weighting("distdw")
class DistDW(EMAWeighting):
    """Distribution-aware debiasing weighting (DHC, Eq. 3–4; reference §7.1).

    Counts the branch's argmax over the unlabeled patches (background included), turns them
    into ``ln(N_max / N_k) / max ln(...)`` weights (×K in the reference code) and smooths
    them with an EMA ``W <- momentum * W + (1 - momentum) * w`` (β = 0.99 in DHC), starting
    from the same formula on the labeled counts. Background, the majority class, therefore
    gets weight exactly 0. ``variant="paper"`` omits the ×K scaling (the paper does not
    mention it; it cancels in the weighted-mean CE but not in the Dice term). State: the
    EMA'd weights.
    """

    title = "DistDW"

    def _raw(self, counts: torch.Tensor) -> torch.Tensor:
        return distdw_weights(counts, scale_by_k=self.variant == "reference")

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        """Start the EMA at the DistDW weights of the labeled counts (K,); (K,) float32."""
        self.weights = self._raw(labeled_counts)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        """Smooth in the weights of the argmax histogram of ``logits_u`` (B_u, K, D, H, W).

        ``logits_l`` and ``labels_l`` are ignored; returns (K,) float32.
        """
        return self.observe(logits_u=logits_u)

    def observe(self, *, logits_l=None, labels_l=None, logits_u=None,  # noqa: ANN001
                argmax_l=None, argmax_u=None) -> torch.Tensor:
        """:meth:`update` from ``argmax_u`` (B_u, D, H, W) when given; (K,) float32."""
        argmax_u = self._argmax(logits_u, argmax_u)
        self._require("logits_u (the unlabeled half of the batch)", argmax_u)
        return self.smooth(self._raw(class_histogram(argmax_u, self.num_classes).double()))
