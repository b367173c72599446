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

import math

import torch
import torch.nn.functional as F
from torch import nn

from dhcbench.interfaces import Batch, StepContext, StepOutput
from dhcbench.methods.base import Method, one_line, register_semi_supervised, semi_supervised_output
from dhcbench.methods.losses import ce_plus_dice, class_argmax, masked_ce
from dhcbench.methods.networks import INITIALISERS, VNet, VNetDecoder
from dhcbench.methods.pseudo.base import OTHER


class _GradReverse(torch.autograd.Function):
    """Identity forward, gradient times ``-coeff`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # noqa: ANN001
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return -ctx.coeff * grad, None


class WarmStartGRL(nn.Module):
    """Gradient reversal with a warm-start coefficient (DST, Chen et al., NeurIPS 2022).

    Identity forward; backward multiplies the gradient by minus
    ``2 (hi - lo) / (1 + exp(-alpha i / N)) - (hi - lo) + lo`` after i ``step()`` calls
    (reference §4.2: alpha 1, lo 0, hi 0.1, N 500).
    """

    def __init__(self, alpha: float = 1.0, lo: float = 0.0, hi: float = 0.1,
                 max_iters: int = 500) -> None:
        super().__init__()
        self.alpha, self.lo, self.hi, self.max_iters = alpha, lo, hi, max_iters
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))

    def coefficient(self) -> float:
        """The reversal coefficient at the current step count, from ``lo`` towards ``hi``."""
        i = float(self.iters)
        span = self.hi - self.lo
        return float(2.0 * span / (1.0 + math.exp(-self.alpha * i / self.max_iters))
                     - span + self.lo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` unchanged (any shape); its gradient is reversed and scaled."""
        return _GradReverse.apply(x, self.coefficient())

    def step(self) -> None:
        """Count one training step (called after each optimiser step)."""
        self.iters += 1


class VNetDecoupled(nn.Module):
    """DST's network (reference §4.2): one V-Net encoder and three V-Net decoders.

    The decoders are ``main``, ``pseudo`` and ``worst`` (the worst-case decoder sees the
    encoder features through a warm-start gradient reversal layer). Train mode returns the
    three logits maps; eval mode the main decoder's only.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 14, base_filters: int = 32
                 ) -> None:
        super().__init__()
        self.main = VNet(in_channels, num_classes, base_filters, has_dropout=True)
        template = VNet(in_channels, num_classes, base_filters, has_dropout=True)
        self.pseudo = VNetDecoder(template)
        self.worst = VNetDecoder(VNet(in_channels, num_classes, base_filters, has_dropout=True))
        self.grl = WarmStartGRL()

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Logits ``(B, K, D, H, W)`` of ``x`` (B, C, D, H, W).

        Train mode: the (main, pseudo, worst) triple; eval mode: the main decoder's only.
        """
        feats = self.main.encode(x)
        main = self.main.head(self.main.dropout(self.main.decode_features(feats)))
        if not self.training:
            return main
        pseudo = self.pseudo(feats)
        worst = self.worst([self.grl(f) for f in feats])
        return main, pseudo, worst


@register_semi_supervised(
    "dst", title="DST", family="general",
    paper="Chen et al., Debiased self-training for semi-supervised learning, NeurIPS 2022",
    networks="2 decoupled V-Nets (encoder + main/pseudo/worst decoders; K / X)",
    description=one_line("""
        Cross pseudo-heads with a 0.95 confidence mask and a worst-case head behind gradient
        reversal. In the reference the pseudo head gets no gradient and the main head learns
        the other's pseudo-head labels; variant='fixed' trains the pseudo head on the
        other's main-head labels, as DST (reference §8.5, §12 item 24).
    """),
    variants=("reference", "fixed"), reference_lambda="1 (train_dst.py default)",
)
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
        """Supervised CE + Dice of both main heads, plus λ_t (cross + worst-case terms).

        Logs ``loss_sup`` and ``loss_unsup``.
        """
        n_l, y = batch.n_l, batch.label_l
        x = batch.images()
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
        return semi_supervised_output(sup, cross + worst, ctx)  # type: ignore[arg-type]

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """Advance both networks' gradient-reversal warm-start."""
        for net in self.networks.values():
            net.grl.step()

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """The mean of the two main heads' logits (B, K, D, H, W)."""
        return (self.networks["a"](image) + self.networks["b"](image)) / 2.0
