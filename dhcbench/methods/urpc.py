"""URPC (Luo et al., MICCAI 2021 / MedIA 2022) as in the DHC code (reference §4.3, §8.3).

One 3D U-Net with four deep-supervision heads. Supervised: (Σ_i CE(o_i, y) + Σ_i negative
Dice(o_i, y)) / 8 on the labeled patches. Unsupervised, on the unlabeled patches: with
p̄ the mean of the four softmaxes and ``v_i = Σ_c KL(p̄ ‖ p_i)`` per voxel,
``L_i = mean((p̄ - p_i)² e^{-v_i}) / (mean(e^{-v_i}) + 1e-8) + mean(v_i)``; the consistency is the
mean of the four L_i (uncertainty-rectified pyramid consistency).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dhcbench.methods.base import (
    LR_LAMBDA_SPACE,
    Batch,
    Method,
    StepContext,
    StepOutput,
    register_method,
)
from dhcbench.methods.losses import negative_dice
from dhcbench.methods.networks import UNet3DDeepSup


def pyramid_consistency(outputs_u: list[torch.Tensor]) -> torch.Tensor:
    """URPC's uncertainty-rectified consistency of the deep-supervision outputs (logits)."""
    probs = [torch.softmax(o.float(), 1) for o in outputs_u]
    mean = torch.stack(probs).mean(0)
    terms = []
    for o, p in zip(outputs_u, probs, strict=True):
        # nn.KLDivLoss(log p_i, p̄), pointwise, summed over classes
        v = (mean * (torch.log(mean.clamp_min(1e-38)) - F.log_softmax(o.float(), 1))).sum(1)
        w = torch.exp(-v)
        terms.append(((mean - p) ** 2 * w[:, None]).mean() / (w.mean() + 1e-8) + v.mean())
    return torch.stack(terms).mean()


class URPC(Method):
    """URPC on the deep-supervision U-Net (its own network and step)."""

    def __init__(self, *, num_classes: int, in_channels: int, base_filters: int,
                 variant: str) -> None:
        super().__init__()
        del variant
        self.networks["net"] = UNet3DDeepSup(in_channels, num_classes, base_filters)

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        n_l = batch.image_l.shape[0]
        outputs = self.networks["net"](torch.cat([batch.image_l, batch.image_u]))
        y = batch.label_l
        ce = sum(F.cross_entropy(o[:n_l].float(), y) for o in outputs)
        dice = sum(negative_dice(o[:n_l], y) for o in outputs)
        sup = (ce + dice) / (2 * len(outputs))
        unsup = pyramid_consistency([o[n_l:] for o in outputs])
        loss = sup + ctx.unsup_weight * unsup
        return StepOutput(loss=loss, scalars={"loss_sup": sup.detach(),
                                              "loss_unsup": unsup.detach()})

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return self.networks["net"](image)


register_method(
    "urpc", title="URPC", family="general",
    paper="Luo et al., Efficient semi-supervised gross target volume of nasopharyngeal"
          " carcinoma segmentation via uncertainty rectified pyramid consistency, MICCAI 2021",
    factory=URPC, networks="3D U-Net with 4 deep-supervision heads (InstanceNorm)",
    description="Uncertainty-rectified pyramid consistency between the deep-supervision"
                " outputs (reference §4.3, §8.3).",
    reference_lambda="1 (train_urpc.py default)",
    search_space=LR_LAMBDA_SPACE,
)
