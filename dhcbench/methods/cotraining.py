"""The shared co-training step and the methods that are registrations of it.

The learners see the same input: the labeled patches followed by the unlabeled ones
(reference §7, no perturbation). Each has a class-weighting strategy whose weights enter its
supervised loss and its unsupervised loss (or none: unweighted losses), and a pseudo-labeler
(:mod:`dhcbench.methods.pseudo`) makes each learner's unsupervised targets, from which the
step applies the unsupervised loss once. Two topologies:

- ``cross``: two branches A and B (two V-Nets), each taught from the other (cross pseudo
  supervision, Chen et al., CVPR 2021). CPS is this step with uniform weights; DHC (Wang &
  Li, MICCAI 2023) pairs DiffDW on A with DistDW on B; CReST, SimiS, DePL, Adsh, CLD and
  every ``<A>-<B>`` ablation pairing are registrations of a few lines (reference §8).
- ``mean_teacher``: a student V-Net and an EMA teacher (UA-MT and Basak et al., registered in
  :mod:`dhcbench.methods.mean_teacher`): the labeler runs the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dhcbench.interfaces import Batch, SetupContext, StepContext, StepOutput
from dhcbench.methods.base import Method, semi_supervised_output
from dhcbench.methods.fused_losses import composed_term, loss_terms, softmax_losses, weighted_sum
from dhcbench.methods.losses import class_argmax, masked_ce
from dhcbench.methods.networks import INITIALISERS, VNet
from dhcbench.methods.pseudo import PSEUDO_LABELERS, TOPOLOGIES, PseudoInput, PseudoTargets
from dhcbench.methods.weighting import WEIGHTINGS, WeightingStrategy

SUP_LOSSES = ("w_ce+dice", "wce", "(ce+dice)/2")
UNSUP_LOSSES = ("wce", "ce+dice")


@dataclass(frozen=True)
class Branch:
    """One learner: its weighting strategy and the initialisation of its V-Net.

    ``weighting`` is a WEIGHTINGS key, with keyword arguments ``weighting_kwargs`` (None: no
    strategy, unweighted losses); ``init`` is ``kaiming``, ``xavier`` or ``default``.
    """

    weighting: str | None
    init: str = "kaiming"
    weighting_kwargs: tuple[tuple[str, Any], ...] = ()


def supervised_loss(name: str, logits: torch.Tensor, labels: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:
    """The supervised loss ``name`` (0-d float32) of logits on their labels.

    By the loss primitives (the step itself uses the fused
    :func:`~dhcbench.methods.fused_losses.softmax_losses`, equal up to rounding).

    Args:
        name: one of :data:`SUP_LOSSES` (see :func:`loss_terms`).
        logits: (B_l, K, D, H, W) float logits of the labeled patches.
        labels: (B_l, D, H, W) int64 ground truth.
        weight: (K,) float class weights, or None (unweighted).
    """
    return weighted_sum((f, composed_term(logits, t)) for f, t in loss_terms(name, labels, weight))


def plain_hard(targets: PseudoTargets) -> bool:
    """Whether ``targets`` are hard labels learned without mask, logit change or soft target.

    Those the step learns through the fused loss terms of the configured loss.
    """
    return (targets.soft is None and targets.mask is None and targets.logit_scale is None
            and targets.logit_shift is None)


def unsupervised_loss(name: str, logits: torch.Tensor, targets: PseudoTargets) -> torch.Tensor:
    """How a learner learns its :class:`PseudoTargets`; a 0-d float32 loss.

    Its logits (B, K, D, H, W) (samples ``start:``), times ``logit_scale`` and plus
    ``logit_shift`` where given, against

    - ``soft`` targets: the squared softmax difference on the voxels of ``mask``, summed
      over classes and voxels and divided by ``2 Σ mask`` (UA-MT's consistency);
    - hard targets with a ``mask``: CE × class weight × mask, mean over *all* voxels (the
      reference's ``WeightedCrossEntropyLoss``);
    - hard targets without: the configured loss ``name`` with the class weights — ``wce``
      (weighted CE on hard pseudo-labels, reference §7 step 5) or ``ce+dice``, the DHC
      paper's Eq. 2, (weighted CE + weighted negative soft Dice) / 2 (1 - Dice up to a
      constant, so the same gradients).
    """
    if plain_hard(targets):
        return weighted_sum((f, composed_term(logits, t)) for f, t in loss_terms(
            name, targets.target, targets.weight, targets.start))
    z = logits[targets.start:] if targets.start else logits
    if targets.logit_scale is not None:
        z = z.float() * targets.logit_scale
    if targets.logit_shift is not None:
        z = z.float() + targets.logit_shift
    if targets.soft is not None:
        diff = (torch.softmax(z.float(), 1) - targets.soft) ** 2
        mask = (torch.ones_like(diff[:, :1]) if targets.mask is None
                else targets.mask[:, None].float())
        return (mask * diff).sum() / (2.0 * mask.sum() + 1e-16)
    return masked_ce(z, targets.target, targets.mask, targets.weight)


def learner_losses(sup_loss: str, unsup_loss: str, logits: torch.Tensor, labels: torch.Tensor,
                   weight: torch.Tensor | None, targets: PseudoTargets
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One learner's supervised and unsupervised loss (0-d float32 each), as in the step.

    The supervised terms on the first ``len(labels)`` samples and, for :func:`plain_hard`
    targets, the unsupervised ones go through one fused
    :func:`~dhcbench.methods.fused_losses.softmax_losses` call (one softmax, one gradient for
    all); other targets through :func:`unsupervised_loss`, the supervised terms then on the
    labeled samples' logits only.
    """
    sup = loss_terms(sup_loss, labels, weight)
    if not plain_hard(targets):  # the labeled samples' softmax only
        values = softmax_losses(logits[:len(labels)], tuple(t for _, t in sup))
        return (weighted_sum((f, values[i]) for i, (f, _) in enumerate(sup)),
                unsupervised_loss(unsup_loss, logits, targets))
    unsup = loss_terms(unsup_loss, targets.target, targets.weight, targets.start)
    values = softmax_losses(logits, tuple(t for _, t in sup + unsup))
    return (weighted_sum((f, values[i]) for i, (f, _) in enumerate(sup)),
            weighted_sum((f, values[len(sup) + i]) for i, (f, _) in enumerate(unsup)))


class CoTraining(Method):
    """The learners of a topology trained together on one step.

    Each learner has its own class weights and the pseudo-labeler's targets. Per step
    (reference §7): logits z^k = net_k(x), (B, K, D, H, W), for x = labeled ⊕ unlabeled and
    each learner k (``a`` and ``b``, or the ``student``); weights W^k (K,) from each
    learner's strategy (before the losses, without gradient); the labeler's targets T^k
    (without gradient); ``L = Σ_k sup(z^k_l, y; W^k) + λ_t · Σ_k unsup(z^k, T^k)``
    (:func:`unsupervised_loss`; for CPS/DHC: ``unsup(z^A, argmax z^B; W^A) + unsup(z^B,
    argmax z^A; W^B)``).

    ``cross``: ``branch_a`` and ``branch_b``; prediction averages the two branches' logits
    (§10). ``mean_teacher``: ``branch_a`` is the student's; the teacher is a second V-Net
    with its own initialisation (same initialiser), no gradient, updated after every step
    as ``θ_t <- α θ_t + (1 - α) θ_s`` with ``α = min(1 - 1/(g + 1), 0.99)`` (parameters
    only, BatchNorm buffers not averaged) and kept in train mode, so its dropout and batch
    statistics stay active (reference §8.2, §8.10). The reference takes g from the *epoch*;
    ``variant="fixed"`` uses the global step, as the mean-teacher papers. Predictions come
    from the student.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        base_filters: int,
        variant: str,
        branch_a: Branch,
        branch_b: Branch | None = None,
        topology: str = "cross",
        sup_loss: str = "auto",
        unsup_loss: str = "auto",
        pseudo: str = "hard",
        pseudo_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if sup_loss == "auto":  # the paper's Eq. 1 is CE only; the code adds the Dice term
            sup_loss = "wce" if variant == "paper" else "w_ce+dice"
        if sup_loss not in SUP_LOSSES:
            raise ValueError(f"sup_loss must be one of {SUP_LOSSES}, got {sup_loss!r}")
        if unsup_loss == "auto":
            unsup_loss = "ce+dice" if variant == "paper" else "wce"
        if unsup_loss not in UNSUP_LOSSES:
            raise ValueError(f"unsup_loss must be one of {UNSUP_LOSSES}, got {unsup_loss!r}")
        if topology not in TOPOLOGIES or (branch_b is None) != (topology == "mean_teacher"):
            raise ValueError(f"topology must be one of {TOPOLOGIES}; 'cross' takes branch_a"
                             " and branch_b, 'mean_teacher' branch_a only (the student)")
        self.num_classes = num_classes
        self.variant = variant
        self.topology = topology
        self.sup_loss = sup_loss
        self.unsup_loss = unsup_loss
        self.strategies: dict[str, WeightingStrategy] = {}
        branches = ({"student": branch_a} if branch_b is None
                    else {"a": branch_a, "b": branch_b})
        self.learners = tuple(branches)
        for key, branch in branches.items():
            net = VNet(in_channels, num_classes, base_filters, has_dropout=True)
            self.networks[key] = INITIALISERS[branch.init](net)
            if branch.weighting is not None:
                cls = WEIGHTINGS.get(branch.weighting)
                self.strategies[key] = cls(num_classes, variant=variant,
                                           **dict(branch.weighting_kwargs))
        if topology == "mean_teacher":
            net = VNet(in_channels, num_classes, base_filters, has_dropout=True)
            self.networks["teacher"] = INITIALISERS[branch_a.init](net)
            for p in self.networks["teacher"].parameters():
                p.requires_grad_(False)
        self.pseudo = PSEUDO_LABELERS.get(pseudo)(num_classes, variant=variant,
                                                  **(pseudo_kwargs or {}))
        if self.pseudo.topology != topology:
            raise ValueError(f"pseudo-labeler {pseudo!r} works on the {self.pseudo.topology!r}"
                             f" topology, not {topology!r}")

    def setup(self, labeled_counts: torch.Tensor, context: SetupContext | None = None) -> None:
        """Reset every weighting strategy from ``labeled_counts`` (K,); set up the labeler."""
        for strategy in self.strategies.values():
            strategy.reset(labeled_counts)
        self.pseudo.setup(labeled_counts, context or SetupContext())

    def to(self, device: torch.device) -> CoTraining:
        """Move the networks, the strategies' and the labeler's state."""
        super().to(device)
        for strategy in self.strategies.values():
            strategy.to(device)
        self.pseudo.to(device)
        return self

    def optimized_networks(self) -> dict[str, torch.nn.Module]:
        """The learners (``a`` and ``b``, or ``student``): never the EMA teacher."""
        return {key: self.networks[key] for key in self.learners}

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        """Forward every learner on labeled ⊕ unlabeled, then weigh, pseudo-label and sum.

        The loss is ``L`` of the class docstring. Logs ``loss_sup`` and ``loss_unsup``, each
        learner's weights as ``weight_<key>`` (K,) and the labeler's own logs.
        """
        n_l, y = batch.n_l, batch.label_l
        x = batch.images()
        logits = {key: self.networks[key](x) for key in self.learners}
        with torch.no_grad():
            # One argmax per learner, shared by its weighting strategy and the labeler.
            argmax = {key: class_argmax(z) for key, z in logits.items()}
            weights = {
                key: self.strategies[key].observe(
                    logits_l=z[:n_l].detach(), labels_l=y, logits_u=z[n_l:].detach(),
                    argmax_l=argmax[key][:n_l], argmax_u=argmax[key][n_l:],
                ) if key in self.strategies else None
                for key, z in logits.items()
            }
            targets = self.pseudo.targets(PseudoInput(
                logits=logits, n_l=n_l, labels_l=y, weights=weights, image_u=batch.image_u,
                teacher=self.networks["teacher"] if self.topology == "mean_teacher" else None,
                ctx=ctx, argmax=argmax))
        losses = [learner_losses(self.sup_loss, self.unsup_loss, z, y, weights[k], targets[k])
                  for k, z in logits.items()]
        sup: torch.Tensor = sum(s for s, _ in losses)  # type: ignore[assignment]
        unsup: torch.Tensor = sum(u for _, u in losses)  # type: ignore[assignment]
        out = semi_supervised_output(sup, unsup, ctx)
        out.vectors.update({f"weight_{k}": w.detach() for k, w in weights.items()
                            if w is not None})
        for t in targets.values():  # the labeler's own logs (a sampling rate, a fraction)
            for name, value in t.logs.items():
                (out.vectors if value.ndim else out.scalars)[name] = value
        return out

    def ema_decay(self, ctx: StepContext) -> float:
        """The teacher's α for this step: from the epoch (reference) or the global step."""
        g = ctx.iteration if self.variant == "fixed" else ctx.epoch
        return min(1.0 - 1.0 / (g + 1.0), 0.99)

    @torch.no_grad()
    def after_optimizer_step(self, ctx: StepContext) -> None:
        """Mean teacher: move the teacher's parameters towards the student's (EMA)."""
        if self.topology != "mean_teacher":
            return
        alpha = self.ema_decay(ctx)
        student = dict(self.networks["student"].named_parameters())
        for name, p in self.networks["teacher"].named_parameters():
            p.mul_(alpha).add_(student[name].detach(), alpha=1.0 - alpha)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """The student's logits, or the mean of the two branches' (B, K, D, H, W)."""
        if self.topology == "mean_teacher":
            return self.networks["student"](image)
        return (self.networks["a"](image) + self.networks["b"](image)) / 2.0

    def extra_state(self) -> dict[str, Any]:
        """The weighting strategies' and the pseudo-labeler's state."""
        return {"strategies": {key: s.state_dict() for key, s in self.strategies.items()},
                "pseudo": self.pseudo.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the strategies' and the labeler's state (also from older checkpoints)."""
        for key, s in self.strategies.items():
            s.load_state_dict(state["strategies"][key])
        # Checkpoints of the former mean-teacher classes kept the labeler's state at the top.
        self.pseudo.load_state_dict(state.get("pseudo", state))
        self.pseudo.to(next(self.networks.parameters()).device)
