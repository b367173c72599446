"""Uncertainty-masked teacher targets: UA-MT (Yu et al., MICCAI 2019)."""

from __future__ import annotations

import torch

from dhcbench.methods.losses import class_argmax
from dhcbench.methods.pseudo.base import PseudoInput, PseudoLabeler, PseudoTargets, pseudo_labeler
from dhcbench.methods.pseudo.functional import predictive_entropy, uamt_threshold


@pseudo_labeler("uamt")
class UncertaintyMask(PseudoLabeler):
    """UA-MT as in the DHC code (reference §8.2): uncertainty-masked teacher softmax.

    Mean-teacher topology. The teacher sees the unlabeled patches plus clamped Gaussian
    noise (σ 0.1, ±0.2); its softmax is the
    student's soft target (squared-error consistency), kept where the uncertainty — the
    entropy of the mean of T = 8 noisy passes — is below :func:`uamt_threshold` (ln 2 in
    the reference, ln K for ``variant="fixed"``).
    """

    topology = "mean_teacher"
    passes = 8

    @staticmethod
    def _noisy(x: torch.Tensor) -> torch.Tensor:
        return x + torch.clamp(torch.randn_like(x) * 0.1, -0.2, 0.2)

    def targets(self, inp: PseudoInput) -> dict[str, PseudoTargets]:
        """The noisy teacher's softmax as the student's soft target, where it is certain.

        Soft target (B_u, K, D, H, W) float from ``start = n_l``; mask (B_u, D, H, W) float,
        1 where the entropy of the mean of ``passes`` noisy teacher passes is below the
        threshold. Logs the certain fraction.
        """
        assert inp.teacher is not None and inp.image_u is not None and inp.ctx is not None
        teacher, x_u, ctx = inp.teacher, inp.image_u, inp.ctx
        shape = inp.logits["student"][inp.n_l:].shape
        t_u = teacher(self._noisy(x_u))
        repeated = x_u.repeat(2, 1, 1, 1, 1)
        preds = [torch.softmax(teacher(self._noisy(repeated)).float(), 1)
                 for _ in range(self.passes // 2)]
        uncertainty = predictive_entropy(torch.cat(preds).reshape(self.passes, *shape).mean(0))
        threshold = uamt_threshold(ctx.epoch, ctx.max_epochs, self.num_classes, self.variant)
        mask = (uncertainty[:, 0] < threshold).float()
        soft = torch.softmax(t_u.float(), 1)
        return {"student": PseudoTargets(class_argmax(soft), mask, soft=soft, start=inp.n_l,
                                         logs={"certain_fraction": mask.mean()})}
