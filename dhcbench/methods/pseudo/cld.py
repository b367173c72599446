"""Confidence-based per-class sampling: CLD (Lin et al., MICCAI 2022)."""

from __future__ import annotations

import torch

from dhcbench.methods.pseudo.base import (
    OTHER,
    PseudoInput,
    PseudoLabeler,
    PseudoTargets,
    pseudo_labeler,
)
from dhcbench.methods.pseudo.functional import refreshed_confidence, sampling_rate, true_class_sums


@pseudo_labeler("cld")
class CLD(PseudoLabeler):
    """CLD as in the DHC code (reference §8.11): confidence-based per-class sampling.

    Each branch keeps a per-class confidence: the mean true-class softmax over labeled
    voxels, initialised U(0, 1) (shared by both
    branches), refreshed every ``update_iters`` steps (first replaced, then EMA ``momentum``).
    A voxel the branch predicts as c is kept with probability ``((1 - conf_c) / max(1 -
    conf)) ** 0.5``, learning the other's argmax with the branch's (CLD) class weights.
    """

    state_names = ("conf", "sums", "counts", "steps", "updated")

    def __init__(self, num_classes: int, variant: str = "reference", momentum: float = 0.999,
                 update_iters: int = 8, power: float = 0.5) -> None:
        super().__init__(num_classes, variant)
        self.momentum, self.update_iters, self.power = momentum, update_iters, power
        start = torch.rand(num_classes)
        self.conf = {"a": start, "b": start.clone()}
        self.sums = {b: torch.zeros(num_classes) for b in "ab"}
        self.counts = {b: torch.zeros(num_classes) for b in "ab"}
        self.steps = torch.zeros((), dtype=torch.long)
        self.updated = torch.zeros((), dtype=torch.bool)

    def sampling_rate(self, key: str) -> torch.Tensor:
        """Branch ``key``'s per-class probability (K,) float32 of keeping a voxel."""
        return sampling_rate(self.conf[key], self.power)

    def targets(self, inp: PseudoInput) -> dict[str, PseudoTargets]:
        """Teach each branch the other's argmax on its own sampled voxels, with its weights.

        Also banks the labeled true-class confidences and refreshes them every
        ``update_iters`` steps. Targets (B, D, H, W) int64, masks (B, D, H, W) float 0/1.
        """
        masks, pseudo = {}, {}
        for b, z in inp.logits.items():
            added = true_class_sums(z[:inp.n_l], inp.labels_l, self.num_classes)
            for store, add in zip((self.sums, self.counts), added, strict=True):
                store[b] = store[b].to(z.device) + add
            pseudo[b] = inp.argmax_of(b)
            rate = self.sampling_rate(b).to(z.device)
            masks[b] = (torch.rand(pseudo[b].shape, device=z.device) < rate[pseudo[b]]).float()
        self.steps = self.steps + 1
        if int(self.steps) % self.update_iters == 0:
            for b in inp.logits:
                self.conf[b] = refreshed_confidence(self.conf[b], self.sums[b], self.counts[b],
                                                    self.momentum, not bool(self.updated))
                self.sums[b] = torch.zeros_like(self.sums[b])
                self.counts[b] = torch.zeros_like(self.counts[b])
            self.updated = torch.ones((), dtype=torch.bool)
        return {b: PseudoTargets(pseudo[OTHER[b]], masks[b], inp.weights.get(b))
                for b in inp.logits}
