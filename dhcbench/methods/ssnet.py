"""SS-Net (Wu et al., MICCAI 2022) as in the DHC code (reference §4.1 VNet4SSNet, §8.4).

One V-Net plus projection, prediction and per-class selector heads. Loss = negative Dice
(background included, smooth 1e-8) on the labeled patches + λ_t (LDS + 0.1 (C_lab + C_unlab)):

- LDS, virtual adversarial smoothing on all samples: one power iteration (ξ = 10) finds the
  direction that most changes the prediction (distance = negative soft Dice, background
  included), then the prediction at ε = 10 along it must match the clean one; batch-norm
  statistics are frozen meanwhile.
- Contrastive separation: a memory of 32 projected features per foreground class, refilled
  every step from labeled voxels predicted correctly (projection in eval mode, the 32 lowest
  selector scores kept); every voxel's predicted feature (labeled voxels by label, unlabeled
  by pseudo-label) is pulled towards its class's memory with ``1 - cosine`` distances weighted
  by the two selectors (sigmoid, rescaled to mean 1); per-class means summed and divided by K.

The reference computes but never adds the CE term (§12 item 24); ``variant="fixed"`` adds it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dhcbench.interfaces import Batch, StepContext, StepOutput
from dhcbench.methods.base import Method, one_line, register_semi_supervised, semi_supervised_output
from dhcbench.methods.losses import class_argmax, negative_dice, soft_dice_per_class
from dhcbench.methods.networks import VNet


def dice_distance(probs: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Negative soft Dice between two (B, K, D, H, W) probability maps, 0-d float32.

    Background included, smooth 1e-8: LDS's distance between predictions.
    """
    return -soft_dice_per_class(probs, target_probs, smooth=1e-8).mean()


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Keep ``module``'s BatchNorm running statistics unchanged inside the block.

    Batch statistics still normalise; the momentum is 0 meanwhile and restored after.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom


def _l2_normalise(d: torch.Tensor) -> torch.Tensor:
    flat = d.reshape(d.shape[0], -1)
    return (flat / (flat.norm(dim=1, keepdim=True) + 1e-8)).reshape(d.shape)


class SSNetHeads(nn.Module):
    """SS-Net's heads on the V-Net's last decoder feature (reference §4.1, VNet4SSNet).

    Projection and prediction MLPs (F -> 64 -> 64) and, per class, two selector MLPs
    (64 -> 64 -> 1) that weigh features and memory entries. They act on voxel feature
    vectors ``(N, F)`` or ``(N, 64)``, not on maps.
    """

    def __init__(self, base_filters: int, num_classes: int, dim: int = 64) -> None:
        super().__init__()

        def mlp(cin: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(cin, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                                 nn.Linear(dim, dim))

        def selector() -> nn.Sequential:
            return nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim),
                                 nn.LeakyReLU(0.2, inplace=True), nn.Linear(dim, 1))

        self.projection = mlp(base_filters)
        self.prediction = mlp(dim)
        self.selector = nn.ModuleList(selector() for _ in range(num_classes))
        self.selector_memory = nn.ModuleList(selector() for _ in range(num_classes))


@register_semi_supervised(
    "ssnet", title="SS-Net", family="general",
    paper=one_line("""
        Wu et al., Exploring smoothness and class-separation for semi-supervised medical
        image segmentation, MICCAI 2022
    """),
    networks="1 V-Net + projection/prediction/selector heads (default init)",
    description=one_line("""
        Virtual adversarial smoothness (LDS) and class-wise contrastive separation against a
        per-class memory. The reference leaves the CE out of the supervised loss;
        variant='fixed' adds it (reference §8.4, §12 item 24).
    """),
    variants=("reference", "fixed"), reference_lambda="1 (train_ssnet.py default)",
)
class SSNet(Method):
    """SS-Net: virtual adversarial smoothness + class-wise contrastive separation."""

    memory_size = 32
    sometimes_without_gradient = ("heads.selector",)
    xi = 10.0
    epsilon = 10.0

    def __init__(self, *, num_classes: int, in_channels: int, base_filters: int,
                 variant: str) -> None:
        super().__init__()
        self.variant = variant
        self.num_classes = num_classes
        self.networks["net"] = VNet(in_channels, num_classes, base_filters, has_dropout=True)
        self.networks["heads"] = SSNetHeads(base_filters, num_classes)
        self.memory: dict[int, torch.Tensor] = {}

    # -- network pieces ------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.networks["net"]
        feats = net.dropout(net.decode_features(net.encode(x)))
        return net.head(feats), feats

    def _vat(self, x: torch.Tensor) -> torch.Tensor:
        net = self.networks["net"]
        with frozen_bn_stats(net):
            with torch.no_grad():
                clean = torch.softmax(net(x).float(), 1)
            d = _l2_normalise(torch.rand_like(x) - 0.5).requires_grad_(True)
            distance = dice_distance(torch.softmax(net(x + self.xi * d).float(), 1), clean)
            (grad,) = torch.autograd.grad(distance, d)
            r_adv = _l2_normalise(grad.detach()) * self.epsilon
            return dice_distance(torch.softmax(net(x + r_adv).float(), 1), clean)

    def _selector_weights(self, selector: nn.Module, features: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(selector(features))
        return w * w.shape[0] / w.sum()

    def _contrastive(self, predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        heads = self.networks["heads"]
        total = predicted.new_zeros(())
        for c, memory in self.memory.items():
            feats = predicted[labels == c]
            if memory.shape[0] <= 1 or feats.shape[0] <= 1:
                continue
            distance = 1.0 - F.normalize(feats, dim=1) @ F.normalize(memory, dim=1).T
            wf = self._selector_weights(heads.selector[c], feats.detach())
            wm = self._selector_weights(heads.selector_memory[c], memory)
            total = total + (distance * wf * wm.T).mean()
        return total / self.num_classes

    @torch.no_grad()
    def _refresh_memory(self, feats_l: torch.Tensor, labels: torch.Tensor,
                        pred: torch.Tensor) -> None:
        heads = self.networks["heads"]
        heads.eval()
        try:
            for c in range(1, self.num_classes):
                chosen = feats_l[(labels == c) & (pred == c)]
                if chosen.shape[0] == 0:
                    continue
                proj = heads.projection(chosen)
                scores = heads.selector[c](proj)[:, 0]
                order = torch.argsort(scores)[: self.memory_size]
                self.memory[c] = proj[order].detach()
        finally:
            heads.train()

    # -- the step ------------------------------------------------------------------------------
    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        """Negative Dice (+ CE if fixed) plus λ_t (LDS + 0.1 contrastive); refreshes memory.

        Logs ``loss_sup``, ``loss_unsup`` and ``loss_lds``.
        """
        n_l, y = batch.n_l, batch.label_l
        x = batch.images()
        logits, feats = self._forward(x)
        sup = negative_dice(logits[:n_l], y, smooth=1e-8, include_background=True)
        if self.variant == "fixed":
            sup = sup + F.cross_entropy(logits[:n_l].float(), y)
        lds = self._vat(x)
        heads = self.networks["heads"]
        vectors = feats.movedim(1, -1).reshape(-1, feats.shape[1])
        predicted = heads.prediction(heads.projection(vectors))
        with torch.no_grad():
            pred = class_argmax(logits)
        voxels_l = y[0].numel() * n_l
        labels_all = torch.cat([y.reshape(-1), pred[n_l:].reshape(-1)])
        c_lab = self._contrastive(predicted[:voxels_l], labels_all[:voxels_l])
        c_unlab = self._contrastive(predicted[voxels_l:], labels_all[voxels_l:])
        self._refresh_memory(vectors[:voxels_l].detach(), y.reshape(-1),
                             pred[:n_l].reshape(-1))
        unsup = lds + 0.1 * (c_lab + c_unlab)
        return semi_supervised_output(sup, unsup, ctx, loss_lds=lds)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """The V-Net's logits (B, K, D, H, W); the heads are for training only."""
        return self.networks["net"](image)

    def extra_state(self) -> dict[str, Any]:
        """The per-class feature memory: class -> (≤ 32, 64) float features."""
        return {"memory": {c: m.clone() for c, m in self.memory.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the feature memory onto the networks' device."""
        device = next(self.networks.parameters()).device
        self.memory = {int(c): m.to(device) for c, m in state.get("memory", {}).items()}

    def to(self, device: torch.device) -> SSNet:
        """Move the networks and the feature memory."""
        super().to(device)
        self.memory = {c: m.to(device) for c, m in self.memory.items()}
        return self

