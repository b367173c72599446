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

from dhcbench.methods.base import (
    LR_LAMBDA_SPACE,
    METHODS,
    Batch,
    Method,
    SetupContext,
    StepContext,
    StepOutput,
    register_method,
)
from dhcbench.methods.losses import ce_plus_dice, masked_ce, negative_dice, weighted_ce
from dhcbench.methods.networks import INITIALISERS, VNet
from dhcbench.methods.pseudo import PSEUDO_LABELERS, TOPOLOGIES, PseudoInput, PseudoTargets
from dhcbench.methods.weighting import WEIGHTINGS, WeightingStrategy
from dhcbench.registry import Registry

SUP_LOSSES = ("w_ce+dice", "wce", "(ce+dice)/2")
UNSUP_LOSSES = ("wce", "ce+dice")


@dataclass(frozen=True)
class Branch:
    """One learner: its weighting strategy (a WEIGHTINGS key, with keyword arguments; None:
    no strategy, unweighted losses) and the initialisation of its V-Net (``kaiming``,
    ``xavier`` or ``default``)."""

    weighting: str | None
    init: str = "kaiming"
    weighting_kwargs: tuple[tuple[str, Any], ...] = ()


def supervised_loss(name: str, logits: torch.Tensor, labels: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:
    """``w_ce+dice``: weighted CE + weighted negative soft Dice (the reference's default);
    ``wce``: weighted CE only (the DHC paper's Eq. 1); ``(ce+dice)/2``: UA-MT's, the mean of
    the two with Dice smooth 1e-8."""
    if name == "w_ce+dice":
        return ce_plus_dice(logits, labels, weight)
    if name == "(ce+dice)/2":
        return 0.5 * (weighted_ce(logits, labels, weight)
                      + negative_dice(logits, labels, weight, smooth=1e-8))
    return weighted_ce(logits, labels, weight)


def unsupervised_loss(name: str, logits: torch.Tensor, targets: PseudoTargets) -> torch.Tensor:
    """How a learner learns its :class:`PseudoTargets`: its logits (samples ``start:``),
    times ``logit_scale`` and plus ``logit_shift`` where given, against

    - ``soft`` targets: the squared softmax difference on the voxels of ``mask``, summed
      over classes and voxels and divided by ``2 Σ mask`` (UA-MT's consistency);
    - hard targets with a ``mask``: CE × class weight × mask, mean over *all* voxels (the
      reference's ``WeightedCrossEntropyLoss``);
    - hard targets without: the configured loss ``name`` with the class weights — ``wce``
      (weighted CE on hard pseudo-labels, reference §7 step 5) or ``ce+dice``, the DHC
      paper's Eq. 2, (weighted CE + weighted negative soft Dice) / 2 (1 - Dice up to a
      constant, so the same gradients).
    """
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
    if targets.mask is not None:
        return masked_ce(z, targets.target, targets.mask, targets.weight)
    if name == "wce":
        return weighted_ce(z, targets.target, targets.weight)
    return 0.5 * (weighted_ce(z, targets.target, targets.weight)
                  + negative_dice(z, targets.target, targets.weight))


class CoTraining(Method):
    """The learners of a topology trained together on one step, with per-learner weights
    and the pseudo-labeler's targets.

    Per step (reference §7): z^k = net_k(x) for x = labeled ⊕ unlabeled and each learner k
    (``a`` and ``b``, or the ``student``); weights W^k from each learner's strategy (before
    the losses, without gradient); the labeler's targets T^k (without gradient);
    ``L = Σ_k sup(z^k_l, y; W^k) + λ_t · Σ_k unsup(z^k, T^k)`` (:func:`unsupervised_loss`;
    for CPS/DHC: ``unsup(z^A, argmax z^B; W^A) + unsup(z^B, argmax z^A; W^B)``).

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
        for strategy in self.strategies.values():
            strategy.reset(labeled_counts)
        self.pseudo.setup(labeled_counts, context or SetupContext())

    def to(self, device: torch.device) -> CoTraining:
        super().to(device)
        for strategy in self.strategies.values():
            strategy.to(device)
        self.pseudo.to(device)
        return self

    def optimized_networks(self) -> dict[str, torch.nn.Module]:
        return {key: self.networks[key] for key in self.learners}

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        n_l = batch.image_l.shape[0]
        x = torch.cat([batch.image_l, batch.image_u])
        y = batch.label_l
        logits = {key: self.networks[key](x) for key in self.learners}
        with torch.no_grad():
            weights = {
                key: self.strategies[key].update(
                    logits_l=z[:n_l].detach(), labels_l=y, logits_u=z[n_l:].detach()
                ) if key in self.strategies else None
                for key, z in logits.items()
            }
            targets = self.pseudo.targets(PseudoInput(
                logits=logits, n_l=n_l, labels_l=y, weights=weights, image_u=batch.image_u,
                teacher=self.networks["teacher"] if self.topology == "mean_teacher" else None,
                ctx=ctx))
        sup: torch.Tensor = sum(  # type: ignore[assignment]
            supervised_loss(self.sup_loss, z[:n_l], y, weights[k]) for k, z in logits.items()
        )
        unsup: torch.Tensor = sum(  # type: ignore[assignment]
            unsupervised_loss(self.unsup_loss, z, targets[k]) for k, z in logits.items()
        )
        loss = sup + ctx.unsup_weight * unsup
        scalars = {"loss_sup": sup.detach(), "loss_unsup": unsup.detach()}
        vectors = {f"weight_{k}": w.detach() for k, w in weights.items() if w is not None}
        for t in targets.values():  # the labeler's own logs (a sampling rate, a fraction)
            for name, value in t.logs.items():
                (vectors if value.ndim else scalars)[name] = value
        return StepOutput(loss=loss, scalars=scalars, vectors=vectors)

    def ema_decay(self, ctx: StepContext) -> float:
        """The teacher's α for this step: from the epoch (reference) or the global step."""
        g = ctx.iteration if self.variant == "fixed" else ctx.epoch
        return min(1.0 - 1.0 / (g + 1.0), 0.99)

    @torch.no_grad()
    def after_optimizer_step(self, ctx: StepContext) -> None:
        if self.topology != "mean_teacher":
            return
        alpha = self.ema_decay(ctx)
        student = dict(self.networks["student"].named_parameters())
        for name, p in self.networks["teacher"].named_parameters():
            p.mul_(alpha).add_(student[name].detach(), alpha=1.0 - alpha)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        if self.topology == "mean_teacher":
            return self.networks["student"](image)
        return (self.networks["a"](image) + self.networks["b"](image)) / 2.0

    def extra_state(self) -> dict[str, Any]:
        return {"strategies": {key: s.state_dict() for key, s in self.strategies.items()},
                "pseudo": self.pseudo.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for key, s in self.strategies.items():
            s.load_state_dict(state["strategies"][key])
        # Checkpoints of the former mean-teacher classes kept the labeler's state at the top.
        self.pseudo.load_state_dict(state.get("pseudo", state))
        self.pseudo.to(next(self.networks.parameters()).device)


def _cotraining(branch_a: Branch, branch_b: Branch, pseudo: str = "hard",
                pseudo_kwargs: dict[str, Any] | None = None):  # noqa: ANN202
    """A factory for METHODS: fixed branches, the usual keyword arguments."""

    def factory(*, num_classes: int, in_channels: int, base_filters: int, variant: str,
                sup_loss: str = "auto", unsup_loss: str = "auto") -> CoTraining:
        return CoTraining(num_classes=num_classes, in_channels=in_channels,
                          base_filters=base_filters, variant=variant, branch_a=branch_a,
                          branch_b=branch_b, sup_loss=sup_loss, unsup_loss=unsup_loss,
                          pseudo=pseudo, pseudo_kwargs=pseudo_kwargs)

    return factory


def make_dhc(
    *,
    num_classes: int,
    in_channels: int,
    base_filters: int,
    variant: str,
    beta: float = 0.99,
    alpha: float = 0.2,
    tau: int = 50,
    sup_loss: str = "auto",
    unsup_loss: str = "auto",
) -> CoTraining:
    """DHC (Wang & Li, MICCAI 2023): DiffDW (α, τ) on branch A, DistDW (β) on branch B,
    both V-Nets Kaiming-initialised (reference §7)."""
    return CoTraining(
        num_classes=num_classes,
        in_channels=in_channels,
        base_filters=base_filters,
        variant=variant,
        branch_a=Branch("diffdw", "kaiming", (("accumulate_iters", tau), ("alpha", alpha))),
        branch_b=Branch("distdw", "kaiming", (("momentum", beta),)),
        sup_loss=sup_loss,
        unsup_loss=unsup_loss,
    )


_LOSS_NOTE = (
    " variant='paper' uses the DHC paper's objective: its CE-only supervised loss (Eq. 1,"
    " sup_loss='wce') and its (CE + Dice) / 2 unsupervised loss (Eq. 2, unsup_loss='ce+dice');"
    " sup_loss and unsup_loss 'auto' pick by variant, and either can be set on its own."
)
_KX = "2 V-Nets (Kaiming / Xavier)"


def _register(key: str, title: str, family: str, paper: str, factory: Any, networks: str,
              description: str, *, variants: tuple[str, ...] = ("reference", "paper"),
              aliases: tuple[str, ...] = (), reference_lambda: str = "0.1",
              space: dict[str, Any] | None = None) -> None:
    """:func:`register_method` with the co-training family's variants and search space."""
    register_method(key, factory, aliases=aliases, title=title, family=family, paper=paper,
                    networks=networks, description=description, variants=variants,
                    reference_lambda=reference_lambda,
                    search_space={**LR_LAMBDA_SPACE, **(space or {})})


_register(
    "cps", "CPS", "general",
    "Chen et al., Semi-supervised semantic segmentation with cross pseudo supervision, CVPR 2021",
    _cotraining(Branch("uniform", "kaiming"), Branch("uniform", "xavier")), _KX,
    "Cross pseudo supervision: each V-Net learns the other's argmax; unweighted CE + Dice"
    " supervision (reference §8.1)." + _LOSS_NOTE,
    aliases=("uniform-uniform",), reference_lambda="1 (train_cps.py default; scripts pass -w)",
)
_register(
    "dhc", "DHC", "ours",
    "Wang & Li, DHC: Dual-debiased Heterogeneous Co-training Framework for Class-imbalanced"
    " Semi-supervised Medical Image Segmentation, MICCAI 2023",
    make_dhc, "2 V-Nets (Kaiming / Kaiming)",
    "DiffDW-weighted branch A and DistDW-weighted branch B with cross pseudo supervision"
    " (reference code's losses, EMAs and ×K scaling by default). variant='paper' uses the"
    " paper's Eq. 3-5 (windowed sums over τ, no Δ factor, no ×K), its CE-only supervised"
    " loss (Eq. 1) and its (CE + Dice) / 2 unsupervised loss (Eq. 2).",
    aliases=("diffdw-distdw",), reference_lambda="1 (train_dhc.py default; README passes 0.1)",
    space={"beta": ("float", 0.9, 0.999), "alpha": ("float", 0.05, 1.0),
           "tau": ("int", 10, 200)},
)
_register(
    "crest", "CReST", "imbalance",
    "Wei et al., CReST: A class-rebalancing self-training framework for imbalanced"
    " semi-supervised learning, CVPR 2021",
    _cotraining(Branch("crest", "kaiming"), Branch("crest", "xavier")), _KX,
    "CPS with CReST class-rebalancing weights per branch from its own unlabeled argmax"
    " (EMA 0.99), in the supervised and unsupervised losses (reference §8.8).",
    variants=("reference",), reference_lambda="0.1 (train_crest.py default)",
    aliases=("crest-crest",),
)
_register(
    "simis", "SimiS", "imbalance",
    "Chen et al., SimiS: Simple Imbalanced Semi-supervised learning (distribution weights), 2022",
    _cotraining(Branch("simis", "kaiming"), Branch("simis", "xavier")), _KX,
    "CPS with SimiS distribution weights per branch from its own argmax over the whole batch"
    " (EMA 0.99) (reference §8.9).",
    variants=("reference",), reference_lambda="0.1 (train_simis.py default)",
    aliases=("simis-simis",),
)
_register(
    "depl", "DePL", "general",
    "Wang et al., Debiased learning from naturally imbalanced pseudo-labels, CVPR 2022",
    _cotraining(Branch("uniform", "kaiming"), Branch("uniform", "xavier"), "depl"), _KX,
    "CPS whose pseudo-labels are debiased by per-voxel class priors (τ 1, confidence 0.9)."
    " The reference computes DePL's adaptive margin but never uses it; variant='fixed'"
    " applies it, as the DePL paper (reference §8.6, §12 item 24).",
    variants=("reference", "fixed"), reference_lambda="1 (train_depl.py default)",
)
_register(
    "adsh", "Adsh", "imbalance",
    "Guo & Li, Class-imbalanced semi-supervised learning with adaptive thresholding,"
    " ICML 2022",
    _cotraining(Branch("uniform", "kaiming"), Branch("uniform", "xavier"), "adsh"), _KX,
    "CPS with adaptive per-class thresholds from a (bounded, histogram) score bank. The"
    " reference multiplies the learner's logits by the other branch's threshold mask;"
    " variant='fixed' masks samples instead, as the Adsh paper (reference §8.7).",
    variants=("reference", "fixed"), reference_lambda="0.1 (train_adsh.py default)",
)
_register(
    "cld", "CLD", "imbalance",
    "Lin et al., Calibrating label distribution for class-imbalanced barely-supervised"
    " knee segmentation, MICCAI 2022",
    _cotraining(Branch("cld", "kaiming"), Branch("cld", "xavier"), "cld"), _KX,
    "CPS with fixed (N_max/N_k)^(1/3) class weights and confidence-based per-class sampling"
    " of the pseudo-labelled voxels (reference §8.11).",
    variants=("reference",), reference_lambda="1 (train_cld.py default)",
)

# -- ablation pairings: any two weightings on the two branches (paper Table 3) ---------------

#: DHC's own weightings: their same-weighting pairings (``distdw-distdw``, ``diffdw-diffdw``)
#: are in the "ours" family and take the weighting's key as an alias.
DHC_WEIGHTINGS = ("diffdw", "distdw")


def ablation_pairings(
    weightings: Registry[type[WeightingStrategy]] = WEIGHTINGS,
) -> list[tuple[str, str]]:
    """Every ordered pair ``(a, b)`` of registered weightings (a on branch A, b on B), sorted;
    a strategy registered with ``@weighting`` joins the ablation without further code."""
    return [(a, b) for a in weightings for b in weightings]


def _register_pairings() -> None:
    """Register ``<a>-<b>`` for every pairing, titled from the classes' ``title``."""
    for a, b in ablation_pairings():
        key = f"{a}-{b}"
        if key in METHODS:  # cps, dhc, crest and simis are pairings already
            continue
        title_a, title_b = WEIGHTINGS.get(a).title, WEIGHTINGS.get(b).title
        same_dw = a == b and a in DHC_WEIGHTINGS
        _register(
            key, f"{title_a}-{title_b}",
            "ours" if same_dw else "ablation",
            "Wang & Li, MICCAI 2023, Table 3 (ablation of the branch weightings)",
            _cotraining(Branch(a, "kaiming"), Branch(b, "xavier")), _KX,
            f"Co-training with {title_a} weights on branch A and {title_b} on branch B,"
            " each in its branch's supervised and unsupervised losses." + _LOSS_NOTE,
            aliases=(a,) if same_dw else (),
        )


_register_pairings()
