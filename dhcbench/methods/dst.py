"""DST (Chen et al., NeurIPS 2022) as in the DHC code (reference §4.2, §8.5).

Two decoupled networks (shared V-Net encoder; main, pseudo and worst-case decoders), A
Kaiming- and B Xavier-initialised. Supervised: CE + Dice on each main head. Cross term: each
main head learns the other network's *pseudo-head* argmax where that head's confidence
exceeds 0.95 (masked CE, mean over all voxels). Worst case: ``2 CE(worst_l, argmax main_l)
+ NLL(log(clamp(1 - softmax(worst_u) + 1e-6, max=1)), argmax main_u)``, through a warm-start
gradient reversal layer. In the reference the pseudo head therefore never receives a
gradient (its output only enters a mask and an argmax); ``variant="fixed"`` restores DST's
decoupling — the *pseudo* head learns the other network's main-head pseudo-labels.
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
from dhcbench.methods.losses import ce_plus_dice, class_argmax, masked_ce
from dhcbench.methods.networks import INITIALISERS, VNetDecoupled

OTHER = {"a": "b", "b": "a"}


class DST(Method):
    """Two decoupled V-Nets with cross pseudo-heads and a worst-case head."""

    threshold = 0.95

    def __init__(self, *, num_classes: int, in_channels: int, base_filters: int,
                 variant: str) -> None:
        super().__init__()
        self.variant = variant
        if variant != "fixed":
            self.frozen_by_design = ("a.pseudo.", "b.pseudo.")
        for key, init in (("a", "kaiming"), ("b", "xavier")):
            net = VNetDecoupled(in_channels, num_classes, base_filters)
            self.networks[key] = INITIALISERS[init](net)

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        n_l = batch.image_l.shape[0]
        x = torch.cat([batch.image_l, batch.image_u])
        y = batch.label_l
        heads = {k: net(x) for k, net in self.networks.items()}  # (main, pseudo, worst)
        sup = sum(ce_plus_dice(h[0][:n_l], y) for h in heads.values())
        labeller = 0 if self.variant == "fixed" else 1  # head whose argmax is the target
        learner = 1 if self.variant == "fixed" else 0  # head that learns it
        targets, masks, main_argmax = {}, {}, {}
        with torch.no_grad():
            for k, h in heads.items():
                conf, targets[k] = torch.softmax(h[labeller].float(), 1).max(1)
                masks[k] = conf > self.threshold
                main_argmax[k] = class_argmax(h[0])
        cross = sum(masked_ce(h[learner], targets[OTHER[k]], masks[OTHER[k]])
                    for k, h in heads.items())
        worst = heads["a"][0].new_zeros(())
        for k, (_main, _pseudo, w) in heads.items():
            w_l, w_u = w[:n_l].float(), w[n_l:].float()
            inverse = torch.log(torch.clamp(1.0 - torch.softmax(w_u, 1) + 1e-6, max=1.0))
            worst = worst + 2.0 * F.cross_entropy(w_l, main_argmax[k][:n_l]) + F.nll_loss(
                inverse, main_argmax[k][n_l:])
        unsup = cross + worst
        loss = sup + ctx.unsup_weight * unsup
        return StepOutput(loss=loss, scalars={"loss_sup": sup.detach(),
                                              "loss_unsup": unsup.detach()})

    def after_optimizer_step(self, ctx: StepContext) -> None:
        for net in self.networks.values():
            net.grl.step()

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return (self.networks["a"](image) + self.networks["b"](image)) / 2.0


register_method(
    "dst", title="DST", family="general",
    paper="Chen et al., Debiased self-training for semi-supervised learning, NeurIPS 2022",
    factory=DST, networks="2 decoupled V-Nets (encoder + main/pseudo/worst decoders; K / X)",
    description="Cross pseudo-heads with a 0.95 confidence mask and a worst-case head behind"
                " gradient reversal. In the reference the pseudo head gets no gradient and"
                " the main head learns the other's pseudo-head labels; variant='fixed' trains"
                " the pseudo head on the other's main-head labels, as DST (reference §8.5,"
                " §12 item 24).",
    variants=("reference", "fixed"), reference_lambda="1 (train_dst.py default)",
    search_space=LR_LAMBDA_SPACE,
)
