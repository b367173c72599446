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

from dhcbench.methods.base import (
    LR_LAMBDA_SPACE,
    Batch,
    Method,
    StepContext,
    StepOutput,
    register_method,
)
from dhcbench.methods.losses import class_argmax, negative_dice, soft_dice_per_class
from dhcbench.methods.networks import SSNetHeads, VNet


def dice_distance(probs: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Negative soft Dice between two probability maps, background included, smooth 1e-8."""
    return -soft_dice_per_class(probs, target_probs, smooth=1e-8).mean()


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Batch statistics still normalise, but running statistics are not updated."""
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
        n_l = batch.image_l.shape[0]
        x = torch.cat([batch.image_l, batch.image_u])
        y = batch.label_l
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
        loss = sup + ctx.unsup_weight * unsup
        return StepOutput(loss=loss, scalars={"loss_sup": sup.detach(),
                                              "loss_unsup": unsup.detach(),
                                              "loss_lds": lds.detach()})

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return self.networks["net"](image)

    def extra_state(self) -> dict[str, Any]:
        return {"memory": {c: m.clone() for c, m in self.memory.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        device = next(self.networks.parameters()).device
        self.memory = {int(c): m.to(device) for c, m in state.get("memory", {}).items()}

    def to(self, device: torch.device) -> SSNet:
        super().to(device)
        self.memory = {c: m.to(device) for c, m in self.memory.items()}
        return self


register_method(
    "ssnet", title="SS-Net", family="general",
    paper="Wu et al., Exploring smoothness and class-separation for semi-supervised medical"
          " image segmentation, MICCAI 2022",
    factory=SSNet, networks="1 V-Net + projection/prediction/selector heads (default init)",
    description="Virtual adversarial smoothness (LDS) and class-wise contrastive separation"
                " against a per-class memory. The reference leaves the CE out of the"
                " supervised loss; variant='fixed' adds it (reference §8.4, §12 item 24).",
    variants=("reference", "fixed"), reference_lambda="1 (train_ssnet.py default)",
    search_space=LR_LAMBDA_SPACE,
)
