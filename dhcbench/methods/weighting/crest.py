"""CReST class-rebalancing weights (Wei et al., CVPR 2021) as adapted by the DHC code."""

from __future__ import annotations

import torch

from dhcbench.methods.losses import class_histogram
from dhcbench.methods.weighting.base import EMAWeighting, weighting
from dhcbench.methods.weighting.functional import crest_weights


@weighting("crest")
class CReST(EMAWeighting):
    """CReST class-rebalancing weights (reference §8.8).

    Counts the branch's own argmax on the unlabeled patches, maps them with
    :func:`crest_weights` (reversed-rank ``(N_k / N_max) ** power``, no ×K) and smooths
    with an EMA (0.99), initialised from the labeled ground truth. Both variants are the
    reference's. State: the EMA'd weights.
    """

    title = "CReST"

    def __init__(
        self, num_classes: int, momentum: float = 0.99, power: float = 1.0 / 3.0,
        variant: str = "reference",
    ) -> None:
        super().__init__(num_classes, momentum, variant)
        self.power = power

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        """Start the EMA at the CReST weights of the labeled counts (K,); (K,) float32."""
        self.weights = crest_weights(labeled_counts, self.power)
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
        counts = class_histogram(argmax_u, self.num_classes).double()
        return self.smooth(crest_weights(counts, self.power))
