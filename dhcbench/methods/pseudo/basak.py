"""Class-wise sampling of teacher pseudo-labels: Basak et al. (MICCAI 2022, "ACISIS")."""

from __future__ import annotations

import torch

from dhcbench.interfaces import SetupContext
from dhcbench.methods.losses import class_argmax
from dhcbench.methods.pseudo.base import PseudoInput, PseudoLabeler, PseudoTargets, pseudo_labeler
from dhcbench.methods.pseudo.functional import class_difficulty, class_indicators, sampling_rate


@pseudo_labeler("basak")
class ClassSampling(PseudoLabeler):
    """Basak et al. as in the DHC code (reference §8.10): class-wise sampled teacher labels.

    Mean-teacher topology. The student learns the teacher's argmax on unlabeled voxels,
    sampled per class: the student's class
    indicators on labeled voxels (:func:`class_indicators`) are summed and, once per epoch,
    turned into a difficulty CC (EMA 0.99 of :func:`class_difficulty`, keeping the
    ``top_m`` smallest entries per indicator) and a rate ``((1 - CC) / max(1 - CC)) ** 2.5``;
    a voxel the student predicts as c is kept with probability sr_c, weighted by its
    confidence ** 1.5 (masked CE, mean over the unlabeled voxels).
    """

    topology = "mean_teacher"
    state_names = ("sums", "iters", "cc", "sampling")
    top_m = 12
    penalty = 0.632

    def __init__(self, num_classes: int, variant: str = "reference") -> None:
        super().__init__(num_classes, variant)
        self.sums, self.iters = torch.zeros(3, num_classes), torch.zeros(())
        self.cc, self.sampling = torch.zeros(num_classes), torch.ones(num_classes)
        self.update_every = 1

    def setup(self, labeled_counts: torch.Tensor, context: SetupContext) -> None:
        """Update the sampling rates once per epoch (``iterations_per_epoch`` steps)."""
        self.update_every = context.iterations_per_epoch

    def _update_sampling(self) -> None:
        current = class_difficulty(self.sums / self.iters.clamp_min(1), self.top_m, self.penalty)
        self.cc = 0.99 * self.cc + 0.01 * current
        self.sampling = sampling_rate(self.cc, 2.5)
        self.sums, self.iters = torch.zeros_like(self.sums), torch.zeros_like(self.iters)

    def targets(self, inp: PseudoInput) -> dict[str, PseudoTargets]:
        """The teacher's argmax on ``image_u``, sampled per class of the student's prediction.

        Target (B_u, D, H, W) int64 from ``start = n_l``; mask (B_u, D, H, W) float, the
        kept voxels times the student's confidence ** 1.5. Logs the sampling rate (K,).
        """
        assert inp.teacher is not None and inp.image_u is not None
        z = inp.logits["student"]
        target = class_argmax(inp.teacher(inp.image_u))
        self.sums = self.sums + class_indicators(z[:inp.n_l], inp.labels_l, self.num_classes)
        self.iters = self.iters + 1
        conf, pred = torch.softmax(z[inp.n_l:].float(), 1).max(1)
        keep = torch.rand_like(conf) > 1.0 - self.sampling[pred]
        mask = keep.float() * conf ** 1.5
        if int(self.iters) >= self.update_every:
            self._update_sampling()
        return {"student": PseudoTargets(target, mask, start=inp.n_l,
                                         logs={"sampling_rate": self.sampling.detach().clone()})}
