"""Debiased pseudo-labels: DePL (Wang et al., CVPR 2022)."""

from __future__ import annotations

import torch

from dhcbench.methods.pseudo.base import (
    OTHER,
    PseudoInput,
    PseudoLabeler,
    PseudoTargets,
    pseudo_labeler,
)


@pseudo_labeler("depl")
class DePL(PseudoLabeler):
    """DePL as in the DHC code (reference §8.6).

    Each branch keeps a per-voxel class prior q̂ (1, K, D, H, W), initialised to 1/K and
    updated ``q̂ <- 0.99 q̂ + 0.01 mean_batch softmax(z_u)`` on the unlabeled samples. Its
    pseudo-labels are ``argmax softmax(z - τ ln q̂)`` on all samples (with the prior before
    this step's update), kept (mask 1) where that probability is >= 0.9; the other branch
    learns them with a masked CE (mean over all voxels). ``variant="fixed"`` also applies
    DePL's adaptive margin — the learner's logits are shifted by ``τ ln q̂`` of the labelling
    branch (after the update) — which the reference computes but never uses.
    """

    state_names = ("prior",)

    def __init__(self, num_classes: int, variant: str = "reference", tau: float = 1.0,
                 threshold: float = 0.9, momentum: float = 0.99) -> None:
        super().__init__(num_classes, variant)
        self.tau, self.threshold, self.momentum = tau, threshold, momentum
        self.prior: dict[str, torch.Tensor] = {}

    def _prior(self, key: str, z: torch.Tensor) -> torch.Tensor:
        shape = (1, *z.shape[1:])
        if key not in self.prior or tuple(self.prior[key].shape) != shape:
            self.prior[key] = torch.full(shape, 1.0 / self.num_classes, device=z.device)
        return self.prior[key]

    def targets(self, inp: PseudoInput) -> dict[str, PseudoTargets]:
        """Teach each branch the other's debiased, confidence-masked pseudo-labels.

        The priors (1, K, D, H, W) are updated from the unlabeled softmax after the labels
        are made. Targets (B, D, H, W) int64, masks (B, D, H, W) float 0/1.
        """
        pseudo, masks = {}, {}
        for k, z in inp.logits.items():
            probs = torch.softmax(z.float() - self.tau * torch.log(self._prior(k, z)), dim=1)
            conf, pseudo[k] = torch.max(probs, dim=1)
            masks[k] = (conf >= self.threshold).float()
        for k, z in inp.logits.items():
            p_u = torch.softmax(z[inp.n_l:].float(), dim=1).mean(0, keepdim=True)
            self.prior[k] = self.momentum * self.prior[k] + (1 - self.momentum) * p_u
        fixed = self.variant == "fixed"
        return {k: PseudoTargets(pseudo[OTHER[k]], masks[OTHER[k]], logit_shift=(
                    self.tau * torch.log(self.prior[OTHER[k]]) if fixed else None))
                for k in inp.logits}
