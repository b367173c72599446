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
from torch import nn

from dhcbench.interfaces import Batch, StepContext, StepOutput
from dhcbench.methods.base import Method, one_line, register_semi_supervised, semi_supervised_output
from dhcbench.methods.losses import negative_dice


class UNet3DDeepSup(nn.Module):
    """URPC's 3D U-Net with four deep-supervision heads (reference §4.3).

    Filters F/2, F, 2F, 4F, 8F (16/32/64/128/256 for F = 32, the reference's
    ``feature_scale=4``); two 3×3×3 conv + InstanceNorm3d (affine False, as the reference
    builds despite its flag name) + ReLU per block; max-pool down, trilinear ×2 up and
    concatenation; Dropout3d 0.5/0.3/0.2/0.1 after the four up blocks; 1×1×1 heads on every
    decoder level, upsampled to full resolution. Train mode returns the four logits maps
    (finest first), eval mode the finest only. Kaiming-normal conv weights.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 14, base_filters: int = 32
                 ) -> None:
        super().__init__()
        f = [max(1, base_filters // 2) * m for m in (1, 2, 4, 8, 16)]

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(cin, cout, 3, padding=1), nn.InstanceNorm3d(cout), nn.ReLU(inplace=True),
                nn.Conv3d(cout, cout, 3, padding=1), nn.InstanceNorm3d(cout),
                nn.ReLU(inplace=True),
            )

        self.down = nn.ModuleList([block(in_channels, f[0])] +
                                  [block(f[i], f[i + 1]) for i in range(4)])
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList([block(f[i + 1] + f[i], f[i]) for i in reversed(range(4))])
        self.drops = nn.ModuleList(nn.Dropout3d(p) for p in (0.5, 0.3, 0.2, 0.1))
        self.heads = nn.ModuleList(nn.Conv3d(f[i], num_classes, 1) for i in reversed(range(4)))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits ``(B, K, D, H, W)`` of ``x`` (B, C, D, H, W).

        In train mode a list of the four deep-supervision outputs, finest first, each at
        full resolution; in eval mode the finest only.
        """
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else self.pool(x))
            skips.append(x)
        outputs = []
        size = skips[0].shape[2:]
        x = skips[-1]
        for j, (blk, drop, head) in enumerate(zip(self.up, self.drops, self.heads, strict=True)):
            skip = skips[-2 - j]
            x = nn.functional.interpolate(x, size=skip.shape[2:], mode="trilinear",
                                          align_corners=False)
            x = drop(blk(torch.cat([skip, x], dim=1)))
            out = head(x)
            if out.shape[2:] != size:
                out = nn.functional.interpolate(out, size=size, mode="trilinear",
                                                align_corners=False)
            outputs.append(out)
        outputs.reverse()  # finest (dsv1) first
        return outputs if self.training else outputs[0]


def pyramid_consistency(outputs_u: list[torch.Tensor]) -> torch.Tensor:
    """URPC's uncertainty-rectified consistency of the deep-supervision outputs.

    Args:
        outputs_u: the four (B_u, K, D, H, W) float logits maps on the unlabeled patches.

    Returns:
        The 0-d float32 consistency loss.
    """
    probs = [torch.softmax(o.float(), 1) for o in outputs_u]
    mean = torch.stack(probs).mean(0)
    terms = []
    for o, p in zip(outputs_u, probs, strict=True):
        # nn.KLDivLoss(log p_i, p̄), pointwise, summed over classes
        v = (mean * (torch.log(mean.clamp_min(1e-38)) - F.log_softmax(o.float(), 1))).sum(1)
        w = torch.exp(-v)
        terms.append(((mean - p) ** 2 * w[:, None]).mean() / (w.mean() + 1e-8) + v.mean())
    return torch.stack(terms).mean()


@register_semi_supervised(
    "urpc", title="URPC", family="general",
    paper=one_line("""
        Luo et al., Efficient semi-supervised gross target volume of nasopharyngeal
        carcinoma segmentation via uncertainty rectified pyramid consistency, MICCAI 2021
    """),
    networks="3D U-Net with 4 deep-supervision heads (InstanceNorm)",
    description=one_line("""
        Uncertainty-rectified pyramid consistency between the deep-supervision outputs
        (reference §4.3, §8.3).
    """),
    reference_lambda="1 (train_urpc.py default)",
)
class URPC(Method):
    """URPC on the deep-supervision U-Net (its own network and step)."""

    def __init__(self, *, num_classes: int, in_channels: int, base_filters: int,
                 variant: str) -> None:
        super().__init__()
        del variant
        self.networks["net"] = UNet3DDeepSup(in_channels, num_classes, base_filters)

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        """CE + Dice of every output on the labeled patches, plus λ_t × pyramid consistency.

        Logs ``loss_sup`` and ``loss_unsup``.
        """
        n_l, y = batch.n_l, batch.label_l
        outputs = self.networks["net"](batch.images())
        ce = sum(F.cross_entropy(o[:n_l].float(), y) for o in outputs)
        dice = sum(negative_dice(o[:n_l], y) for o in outputs)
        sup = (ce + dice) / (2 * len(outputs))
        unsup = pyramid_consistency([o[n_l:] for o in outputs])
        return semi_supervised_output(sup, unsup, ctx)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """The finest deep-supervision output (B, K, D, H, W) of the network in eval mode."""
        return self.networks["net"](image)
