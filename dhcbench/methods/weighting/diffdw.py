"""DiffDW: difficulty-aware debiasing weighting (DHC, Wang & Li, MICCAI 2023, Eq. 5)."""

from __future__ import annotations

from functools import partial

import torch

from dhcbench.methods.losses import hard_dice_of_labels
from dhcbench.methods.weighting.base import WeightingStrategy, weighting
from dhcbench.methods.weighting.functional import EPS, diffdw_speed_terms, diffdw_weights, ema


@weighting("diffdw")
class DiffDW(WeightingStrategy):
    """Difficulty-aware weights from the hard Dice λ_t per class of the labeled patches.

    Learning and unlearning speeds and 1 - λ per class (background included) through
    :func:`diffdw_weights`; ``reset`` gives K·1. Reference (§7.2): EMAs of momentum (τ-1)/τ
    (``1 - λ``'s from 1), ×K. Paper: sums over a ring ``window`` of the last τ rows, no ×K.
    """

    title = "DiffDW"
    state_names = ("weights", "last_dice", "learn", "unlearn", "dice_weight", "window", "filled")

    def __init__(self, num_classes: int, accumulate_iters: int = 50, alpha: float = 0.2,
                 variant: str = "reference") -> None:
        super().__init__(num_classes, variant)
        if accumulate_iters < 1:
            raise ValueError("accumulate_iters (tau) must be >= 1")
        self.tau, self.alpha = int(accumulate_iters), alpha
        self.reset(torch.zeros(num_classes))

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        """Clear the accumulators; the counts (K,) give only the device. Returns K·1 float32."""
        full = partial(torch.full, dtype=torch.float64, device=labeled_counts.device)
        k, vec = self.num_classes, (self.num_classes,)
        self.weights, self.last_dice = full(vec, float(k)), full(vec, EPS)
        self.learn, self.unlearn, self.dice_weight = full(vec, 0.0), full(vec, 0.0), full(vec, 1.0)
        self.window, self.filled = full((self.tau, 3, k), 0.0), full((), 0, dtype=torch.long)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        """From ``logits_l`` (B_l, K, D, H, W) and ``labels_l`` (int64) only; (K,) float32."""
        return self.observe(logits_l=logits_l, labels_l=labels_l)

    def observe(self, *, logits_l=None, labels_l=None, logits_u=None,  # noqa: ANN001
                argmax_l=None, argmax_u=None) -> torch.Tensor:
        """:meth:`update` from ``argmax_l`` (B_l, D, H, W) when given; (K,) float32."""
        argmax_l = self._argmax(logits_l, argmax_l)
        self._require("logits_l and labels_l (the labeled half)", argmax_l, labels_l)
        dice = hard_dice_of_labels(argmax_l, labels_l, self.num_classes).double()
        self.to(dice.device)
        learn, unlearn = diffdw_speed_terms(dice, self.last_dice, self.variant == "reference")
        self.last_dice = dice
        if self.variant == "reference":
            mu = (self.tau - 1) / self.tau
            self.learn, self.unlearn = ema(self.learn, learn, mu), ema(self.unlearn, unlearn, mu)
            self.dice_weight = ema(self.dice_weight, 1.0 - dice, mu)
            terms, scale = (self.learn, self.unlearn, self.dice_weight), float(self.num_classes)
        else:
            self.window[self.filled % self.tau] = torch.stack([learn, unlearn, 1.0 - dice])
            self.filled = self.filled + 1
            terms, scale = tuple(self.window.sum(0)), 1.0
        self.weights = diffdw_weights(*terms, self.alpha, scale)
        return self.current()
