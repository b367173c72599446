"""Mean-teacher methods: one student V-Net and an EMA teacher (UA-MT, Basak et al.).

The teacher is a second V-Net with its own random initialisation, updated after every
optimiser step as ``θ_t <- α θ_t + (1 - α) θ_s`` with ``α = min(1 - 1/(g + 1), 0.99)``
(parameters only; BatchNorm buffers are not averaged) and kept in train mode, so its dropout
and batch statistics stay active (reference §8.2, §8.10). The reference takes g from the
*epoch*; ``variant="fixed"`` uses the global step, as the mean-teacher papers. Predictions
come from the student.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from dhcbench.methods.base import (
    LR_LAMBDA_SPACE,
    Batch,
    Method,
    SetupContext,
    StepContext,
    StepOutput,
    register_method,
)
from dhcbench.methods.losses import ce_plus_dice, class_argmax, negative_dice, one_hot
from dhcbench.methods.networks import INITIALISERS, VNet
from dhcbench.schedules import schedule_time, sigmoid_rampup


class MeanTeacher(Method):
    """Student + EMA teacher; subclasses define the step."""

    def __init__(self, *, num_classes: int, in_channels: int, base_filters: int, variant: str,
                 init: str) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.variant = variant
        for key in ("student", "teacher"):
            net = VNet(in_channels, num_classes, base_filters, has_dropout=True)
            self.networks[key] = INITIALISERS[init](net)
        for p in self.networks["teacher"].parameters():
            p.requires_grad_(False)

    def optimized_networks(self) -> dict[str, torch.nn.Module]:
        return {"student": self.networks["student"]}

    def ema_decay(self, ctx: StepContext) -> float:
        g = ctx.iteration if self.variant == "fixed" else ctx.epoch
        return min(1.0 - 1.0 / (g + 1.0), 0.99)

    @torch.no_grad()
    def after_optimizer_step(self, ctx: StepContext) -> None:
        alpha = self.ema_decay(ctx)
        student = dict(self.networks["student"].named_parameters())
        for name, p in self.networks["teacher"].named_parameters():
            p.mul_(alpha).add_(student[name].detach(), alpha=1.0 - alpha)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return self.networks["student"](image)


def uamt_threshold(epoch: int, max_epochs: int, num_classes: int, variant: str) -> float:
    """UA-MT's uncertainty threshold ``(0.75 + 0.25 r(t)) · H_max`` with the sigmoid ramp-up
    r over the run; H_max = ln 2 in the reference (kept from the binary task), ln K when
    ``variant == "fixed"``."""
    h_max = math.log(num_classes) if variant == "fixed" else math.log(2.0)
    return (0.75 + 0.25 * sigmoid_rampup(schedule_time(epoch), max_epochs)) * h_max


def predictive_entropy(mean_probs: torch.Tensor) -> torch.Tensor:
    """``-Σ_c p̄_c ln(p̄_c + 1e-6)`` over the class axis, kept as a (B, 1, …) map."""
    return -(mean_probs * torch.log(mean_probs + 1e-6)).sum(1, keepdim=True)


class UAMT(MeanTeacher):
    """UA-MT (Yu et al., MICCAI 2019) as in the DHC code (reference §8.2).

    Supervised: 0.5 (CE + negative foreground Dice, smooth 1e-8). The teacher sees the
    unlabeled patches plus clamped Gaussian noise (σ 0.1, ±0.2); its uncertainty is the
    entropy of the mean of T = 8 noisy passes. Consistency: the squared softmax difference
    student vs teacher, kept where the uncertainty is below ``(0.75 + 0.25 r(t)) · ln 2``,
    summed and divided by ``2 Σ mask``. ``variant="fixed"``: EMA decay from the global step
    and the threshold with ln K (the maximum entropy of K classes) instead of the binary ln 2.
    """

    passes = 8

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(init="default", **kwargs)

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.clamp(torch.randn_like(x) * 0.1, -0.2, 0.2)

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        n_l = batch.image_l.shape[0]
        student, teacher = self.networks["student"], self.networks["teacher"]
        z = student(torch.cat([batch.image_l, batch.image_u]))
        z_l, z_u = z[:n_l], z[n_l:]
        x_u = batch.image_u
        with torch.no_grad():
            t_u = teacher(self._noisy(x_u))
            repeated = x_u.repeat(2, 1, 1, 1, 1)
            preds = [torch.softmax(teacher(self._noisy(repeated)).float(), 1)
                     for _ in range(self.passes // 2)]
            mean = torch.cat(preds).reshape(self.passes, *z_u.shape).mean(0)
            uncertainty = predictive_entropy(mean)
        ce = F.cross_entropy(z_l.float(), batch.label_l)
        sup = 0.5 * (ce + negative_dice(z_l, batch.label_l, smooth=1e-8))
        diff = (torch.softmax(z_u.float(), 1) - torch.softmax(t_u.float(), 1)) ** 2
        threshold = uamt_threshold(ctx.epoch, ctx.max_epochs, self.num_classes, self.variant)
        mask = (uncertainty < threshold).float()
        consistency = (mask * diff).sum() / (2.0 * mask.sum() + 1e-16)
        loss = sup + ctx.unsup_weight * consistency
        return StepOutput(loss=loss, scalars={"loss_sup": sup.detach(),
                                              "loss_unsup": consistency.detach(),
                                              "certain_fraction": mask.mean()})


class Basak(MeanTeacher):
    """Basak et al. (MICCAI 2022, "ACISIS") as in the DHC code (reference §8.10).

    A student learns the EMA teacher's argmax on unlabeled voxels, sampled per class: the
    class-wise indicators (a pseudo-entropy, the confidence and a variance term of the
    student on labeled voxels of each class) are aggregated once per epoch into a difficulty
    CC (EMA 0.99 of a Gompertz-weighted score, keeping the 12 smallest entries per indicator)
    and a sampling rate ``sr = ((1 - CC) / max(1 - CC)) ** 2.5``; a voxel predicted c is kept
    with probability sr_c and weighted by its confidence ** 1.5. ``variant="fixed"``: EMA decay
    from the global step.
    """

    top_m = 12
    penalty = 0.632

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(init="kaiming", **kwargs)
        k = self.num_classes
        self.sums = torch.zeros(3, k)
        self.iters = torch.zeros(())
        self.cc = torch.zeros(k)
        self.sampling = torch.ones(k)
        self.update_every = 1

    def setup(self, labeled_counts: torch.Tensor, context: SetupContext | None = None) -> None:
        self.update_every = (context or SetupContext()).iterations_per_epoch

    def to(self, device: torch.device) -> Basak:
        super().to(device)
        for name in ("sums", "iters", "cc", "sampling"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _indicators(self, z_l: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(3, K): per class, over its labeled voxels, the means of Σ_j p_c ln(p_j + 1e-12),
        p_c and max_j p_j - p_c (the reference's "entropy", confidence and variance)."""
        k = self.num_classes
        p = torch.softmax(z_l.float(), 1)
        onehot = one_hot(labels, k)
        p_true = (p * onehot).sum(1)  # p_c at each voxel of class c
        log_sum = torch.log(p + 1e-12).sum(1)
        values = torch.stack([p_true * log_sum, p_true, p.max(1).values - p_true])  # (3, B…)
        flat_y = labels.reshape(-1)
        sums = torch.stack([torch.bincount(flat_y, weights=v.reshape(-1), minlength=k)
                            for v in values])
        counts = torch.bincount(flat_y, minlength=k).float()
        return sums / (counts + 1e-12)

    def _update_sampling(self) -> None:
        r = torch.softmax(self.sums / self.iters.clamp_min(1), dim=1)
        g = 1.0 - torch.exp(-torch.exp(-2.0 * r))
        keep = torch.zeros_like(g, dtype=torch.bool)
        keep.scatter_(1, torch.argsort(g, dim=1)[:, : self.top_m], True)
        g = torch.where(keep, g, torch.full_like(g, self.penalty))
        r = torch.where(keep, r, torch.zeros_like(r))
        cfs = 1.0 - r.sum(0) / 3.0
        fr = g.sum(0)
        current = cfs * fr
        current = current / current.max()
        self.cc = 0.99 * self.cc + 0.01 * current
        gap = 1.0 - self.cc
        self.sampling = (gap / gap.max()) ** 2.5
        self.sums = torch.zeros_like(self.sums)
        self.iters = torch.zeros_like(self.iters)

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        n_l = batch.image_l.shape[0]
        z = self.networks["student"](torch.cat([batch.image_l, batch.image_u]))
        z_l, z_u = z[:n_l], z[n_l:]
        with torch.no_grad():
            target = class_argmax(self.networks["teacher"](batch.image_u))
            self.sums = self.sums + self._indicators(z_l, batch.label_l)
            self.iters = self.iters + 1
            probs_u = torch.softmax(z_u.float(), 1)
            conf, pred = probs_u.max(1)
            keep = torch.rand_like(conf) > 1.0 - self.sampling[pred]
            mask = keep.float() * conf ** 1.5
            if int(self.iters) >= self.update_every:
                self._update_sampling()
        sup = ce_plus_dice(z_l, batch.label_l)
        unsup = (F.cross_entropy(z_u.float(), target, reduction="none") * mask).mean()
        loss = sup + ctx.unsup_weight * unsup
        return StepOutput(loss=loss, scalars={"loss_sup": sup.detach(),
                                              "loss_unsup": unsup.detach()},
                          vectors={"sampling_rate": self.sampling.detach().clone()})

    def extra_state(self) -> dict[str, Any]:
        return {k: getattr(self, k).detach().clone() for k in ("sums", "iters", "cc", "sampling")}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        device = self.cc.device
        for k in ("sums", "iters", "cc", "sampling"):
            if k in state:
                setattr(self, k, state[k].to(device))


register_method(
    "uamt", title="UA-MT", family="general",
    paper="Yu et al., Uncertainty-aware self-ensembling model for semi-supervised 3D left"
          " atrium segmentation, MICCAI 2019",
    factory=UAMT, networks="student V-Net + EMA teacher (default init)",
    description="Mean teacher with uncertainty-masked consistency (T = 8 noisy teacher"
                " passes). The reference takes the EMA decay from the epoch and thresholds"
                " with ln 2; variant='fixed' uses the global step and ln K (reference §8.2,"
                " §12 item 24).",
    variants=("reference", "fixed"), reference_lambda="1 (train_uamt.py default)",
    search_space=LR_LAMBDA_SPACE,
)
register_method(
    "basak", title="Basak et al.", family="imbalance",
    paper="Basak et al., Addressing class imbalance in semi-supervised image segmentation:"
          " a study on cardiac MRI, MICCAI 2022",
    factory=Basak, networks="student V-Net + EMA teacher (Kaiming)",
    description="Mean teacher whose pseudo-labelled voxels are sampled per class by a"
                " difficulty score updated once per epoch. The reference takes the EMA decay"
                " from the epoch; variant='fixed' uses the global step (reference §8.10).",
    variants=("reference", "fixed"), reference_lambda="1 (train_acisis.py default)",
    search_space=LR_LAMBDA_SPACE,
    aliases=("acisis",),
)
