"""Adaptive per-class thresholds: Adsh (Guo & Li, ICML 2022)."""

from __future__ import annotations

import torch

from dhcbench.interfaces import SetupContext
from dhcbench.methods.pseudo.base import (
    OTHER,
    PseudoInput,
    PseudoLabeler,
    PseudoTargets,
    pseudo_labeler,
)
from dhcbench.methods.pseudo.functional import bank_counts, rank_thresholds


@pseudo_labeler("adsh")
class Adsh(PseudoLabeler):
    """Adsh as in the DHC code (reference §8.7): the other branch's argmax, thresholded.

    Per-class thresholds (from 0), refreshed by :func:`rank_thresholds` every
    ``refresh_every`` steps from a bank of the unlabeled softmax (per-class histograms of
    ``bins`` bins: exact to 1/bins). Targets: the other branch's argmax. Reference: all
    voxels, unweighted CE, the learner's logits multiplied by the other's 0/1 mask
    ``[p_c > thr_c]`` (``logit_scale``: the code masks logits; kept as is);
    ``variant="fixed"``: the voxels whose pseudo-label passes its threshold, as the paper.
    """

    state_names = ("thresholds", "pred_counts", "confident", "hist", "steps")

    def __init__(self, num_classes: int, variant: str = "reference", major_threshold: float = 0.9,
                 bins: int = 4096) -> None:
        super().__init__(num_classes, variant)
        self.major_threshold, self.bins, self.refresh_every = major_threshold, bins, 1
        self.thresholds = {b: torch.zeros(num_classes) for b in "ab"}
        self.pred_counts = {b: torch.zeros(num_classes, dtype=torch.float64) for b in "ab"}
        self.confident = {b: torch.zeros(num_classes, dtype=torch.float64) for b in "ab"}
        self.hist = {b: torch.zeros(num_classes, bins, dtype=torch.float64) for b in "ab"}
        self.steps = torch.zeros((), dtype=torch.long)

    def setup(self, labeled_counts: torch.Tensor, context: SetupContext) -> None:
        """Refresh the thresholds every ``(N_u // 4) // 2`` steps, as the reference's bank."""
        self.refresh_every = max(1, (context.num_unlabeled // 4) // 2)  # N_u // 4 slots, 2 a step

    def targets(self, inp: PseudoInput) -> dict[str, PseudoTargets]:
        """Teach each branch the other's argmax under the other's threshold mask.

        Also banks this step's unlabeled softmax and refreshes the thresholds when due.
        Targets are (B, D, H, W) int64 over all samples.
        """
        masks, pseudo, stores = {}, {}, (self.pred_counts, self.confident, self.hist)
        for k, z in inp.logits.items():
            probs = torch.softmax(z.float(), dim=1)
            thr = self.thresholds[k].to(z.device).view(1, -1, *([1] * (z.ndim - 2)))
            masks[k], pseudo[k] = (probs > thr).float(), inp.argmax_of(k)
            added = bank_counts(probs[inp.n_l:], self.major_threshold, self.bins)
            for store, add in zip(stores, added, strict=True):
                store[k] = store[k] + add
        self.steps = self.steps + 1
        for k in inp.logits if int(self.steps) % self.refresh_every == 0 else ():
            self.thresholds[k] = rank_thresholds(*(store[k] for store in stores))
            for store in stores:
                store[k] = torch.zeros_like(store[k])
        fixed = self.variant == "fixed"  # fixed: keep the voxels whose pseudo-label passes
        return {k: PseudoTargets(pseudo[o], masks[o].gather(1, pseudo[o][:, None])[:, 0]) if fixed
                else PseudoTargets(pseudo[o], logit_scale=masks[o]) for k, o in OTHER.items()}
