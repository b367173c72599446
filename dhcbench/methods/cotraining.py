"""The shared co-training step and the methods that are registrations of it (CPS, DHC).

Two branches A and B (two V-Nets) see the same input: the labeled patches followed by the
unlabeled ones (reference §7, no perturbation). Each branch has a class-weighting strategy
whose weights enter both its supervised loss and its unsupervised loss; in the ``cross``
topology each branch learns the other's hard pseudo-labels on all samples (cross pseudo
supervision, Chen et al., CVPR 2021). CPS is this step with uniform weights; DHC (Wang & Li,
MICCAI 2023) pairs DiffDW on A with DistDW on B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dhcbench.methods.base import METHODS, Batch, Method, MethodInfo, StepContext, StepOutput
from dhcbench.methods.losses import ce_plus_dice, class_argmax, negative_dice, weighted_ce
from dhcbench.methods.networks import INITIALISERS, VNet
from dhcbench.methods.weighting import WEIGHTINGS, WeightingStrategy

SUP_LOSSES = ("w_ce+dice", "wce")
UNSUP_LOSSES = ("wce", "ce+dice")


@dataclass(frozen=True)
class Branch:
    """One co-training branch: its weighting strategy (a WEIGHTINGS key, with keyword
    arguments) and the initialisation of its V-Net (``kaiming``, ``xavier`` or ``default``)."""

    weighting: str
    init: str = "kaiming"
    weighting_kwargs: tuple[tuple[str, Any], ...] = ()


def supervised_loss(name: str, logits: torch.Tensor, labels: torch.Tensor,
                    weight: torch.Tensor) -> torch.Tensor:
    """``w_ce+dice``: weighted CE + weighted negative soft Dice (the reference's default);
    ``wce``: weighted CE only (the DHC paper's Eq. 1)."""
    if name == "w_ce+dice":
        return ce_plus_dice(logits, labels, weight)
    return weighted_ce(logits, labels, weight)


def unsupervised_loss(name: str, logits: torch.Tensor, pseudo: torch.Tensor,
                      weight: torch.Tensor) -> torch.Tensor:
    """``wce``: weighted CE on hard pseudo-labels (reference §7 step 5); ``ce+dice``: the
    paper's Eq. 2, (weighted CE + weighted Dice) / 2, with the reference's negative soft Dice
    (1 - Dice up to a constant, so the same gradients)."""
    if name == "wce":
        return weighted_ce(logits, pseudo, weight)
    return 0.5 * (weighted_ce(logits, pseudo, weight) + negative_dice(logits, pseudo, weight))


class CoTraining(Method):
    """Two V-Nets trained together with cross pseudo-supervision and per-branch weights.

    Per step (reference §7): z^A = A(x), z^B = B(x) for x = labeled ⊕ unlabeled; weights
    W^A, W^B from each branch's strategy (before the losses, without gradient);
    ``L = sup(z^A_l, y; W^A) + sup(z^B_l, y; W^B)
    + λ_t [unsup(z^A, argmax z^B; W^A) + unsup(z^B, argmax z^A; W^B)]``,
    the unsupervised terms over all samples. Prediction averages the two branches' logits
    (reference §10).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        base_filters: int,
        variant: str,
        branch_a: Branch,
        branch_b: Branch,
        sup_loss: str = "w_ce+dice",
        unsup_loss: str = "auto",
    ) -> None:
        super().__init__()
        if sup_loss not in SUP_LOSSES:
            raise ValueError(f"sup_loss must be one of {SUP_LOSSES}, got {sup_loss!r}")
        if unsup_loss == "auto":
            unsup_loss = "wce" if variant == "reference" else "ce+dice"
        if unsup_loss not in UNSUP_LOSSES:
            raise ValueError(f"unsup_loss must be one of {UNSUP_LOSSES}, got {unsup_loss!r}")
        self.num_classes = num_classes
        self.variant = variant
        self.sup_loss = sup_loss
        self.unsup_loss = unsup_loss
        self.strategies: dict[str, WeightingStrategy] = {}
        for key, branch in (("a", branch_a), ("b", branch_b)):
            net = VNet(in_channels, num_classes, base_filters, has_dropout=True)
            self.networks[key] = INITIALISERS[branch.init](net)
            cls = WEIGHTINGS.get(branch.weighting)
            self.strategies[key] = cls(num_classes, variant=variant,
                                       **dict(branch.weighting_kwargs))

    def setup(self, labeled_counts: torch.Tensor) -> None:
        for strategy in self.strategies.values():
            strategy.reset(labeled_counts)

    def to(self, device: torch.device) -> CoTraining:
        super().to(device)
        for strategy in self.strategies.values():
            strategy.to(device)
        return self

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        n_l = batch.image_l.shape[0]
        x = torch.cat([batch.image_l, batch.image_u])
        y = batch.label_l
        logits = {key: net(x) for key, net in self.networks.items()}
        with torch.no_grad():
            pseudo = {key: class_argmax(z) for key, z in logits.items()}
            weights = {
                key: self.strategies[key].update(
                    logits_l=z[:n_l].detach(), labels_l=y, logits_u=z[n_l:].detach()
                )
                for key, z in logits.items()
            }
        other = {"a": "b", "b": "a"}
        sup = sum(
            supervised_loss(self.sup_loss, z[:n_l], y, weights[k]) for k, z in logits.items()
        )
        unsup = sum(
            unsupervised_loss(self.unsup_loss, z, pseudo[other[k]], weights[k])
            for k, z in logits.items()
        )
        loss = sup + ctx.unsup_weight * unsup
        return StepOutput(
            loss=loss,
            scalars={"loss_sup": sup.detach(), "loss_unsup": unsup.detach()},
            vectors={f"weight_{k}": w.detach() for k, w in weights.items()},
        )

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return (self.networks["a"](image) + self.networks["b"](image)) / 2.0

    def extra_state(self) -> dict[str, Any]:
        return {key: s.state_dict() for key, s in self.strategies.items()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for key, s in self.strategies.items():
            if key in state:
                s.load_state_dict(state[key])


def make_cps(
    *,
    num_classes: int,
    in_channels: int,
    base_filters: int,
    variant: str,
    sup_loss: str = "w_ce+dice",
    unsup_loss: str = "auto",
) -> CoTraining:
    """CPS (Chen et al., CVPR 2021) as in the DHC code (reference §8.1): unweighted CE + Dice
    per branch, cross CE on hard pseudo-labels, A Kaiming- and B Xavier-initialised."""
    return CoTraining(
        num_classes=num_classes,
        in_channels=in_channels,
        base_filters=base_filters,
        variant=variant,
        branch_a=Branch("uniform", "kaiming"),
        branch_b=Branch("uniform", "xavier"),
        sup_loss=sup_loss,
        unsup_loss=unsup_loss,
    )


def make_dhc(
    *,
    num_classes: int,
    in_channels: int,
    base_filters: int,
    variant: str,
    beta: float = 0.99,
    alpha: float = 0.2,
    tau: int = 50,
    sup_loss: str = "w_ce+dice",
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
    " variant='paper' switches the unsupervised loss to the paper's (CE + Dice) / 2;"
    " sup_loss='wce' gives the paper's CE-only supervised loss."
)

METHODS.add(
    "cps",
    MethodInfo(
        key="cps",
        title="CPS",
        family="general",
        paper="Chen et al., Semi-supervised semantic segmentation with cross pseudo "
        "supervision, CVPR 2021",
        factory=make_cps,
        networks="2 V-Nets (Kaiming / Xavier)",
        description="Cross pseudo supervision: each V-Net learns the other's argmax; "
        "unweighted CE + Dice supervision." + _LOSS_NOTE,
        variants=("reference", "paper"),
        defaults={"sup_loss": "w_ce+dice", "unsup_loss": "auto"},
        search_space={
            "lr": ("log_float", 1e-3, 1e-1),
            "lambda": ("log_float", 1e-2, 1.0),
        },
    ),
)
METHODS.add(
    "dhc",
    MethodInfo(
        key="dhc",
        title="DHC",
        family="ours",
        paper="Wang & Li, DHC: Dual-debiased Heterogeneous Co-training Framework for "
        "Class-imbalanced Semi-supervised Medical Image Segmentation, MICCAI 2023",
        factory=make_dhc,
        networks="2 V-Nets (Kaiming / Kaiming)",
        description="DiffDW-weighted branch A and DistDW-weighted branch B with cross "
        "pseudo supervision (reference code's losses, EMAs and ×K scaling by default)."
        " variant='paper' uses the paper's Eq. 3-5 (windowed sums over τ, no Δ factor, no ×K)"
        " and its (CE + Dice) / 2 unsupervised loss.",
        variants=("reference", "paper"),
        defaults={"beta": 0.99, "alpha": 0.2, "tau": 50, "sup_loss": "w_ce+dice",
                  "unsup_loss": "auto"},
        search_space={
            "beta": ("float", 0.9, 0.999),
            "alpha": ("float", 0.05, 1.0),
            "tau": ("int", 10, 200),
            "lr": ("log_float", 1e-3, 1e-1),
            "lambda": ("log_float", 1e-2, 1.0),
        },
    ),
)
