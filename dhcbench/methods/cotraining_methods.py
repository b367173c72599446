"""The co-training methods of the registry, all built on :class:`CoTraining`.

CPS, DHC, CReST, SimiS, DePL, Adsh, CLD and the ablation pairings of any two registered
weighting strategies (paper Table 3), all built on
:class:`dhcbench.methods.cotraining.CoTraining`.
"""

from __future__ import annotations

from typing import Any

from dhcbench.methods.base import (
    LR_LAMBDA_SPACE,
    METHODS,
    check_kwarg,
    one_line,
    register_method,
)
from dhcbench.methods.cotraining import Branch, CoTraining
from dhcbench.methods.weighting import WEIGHTINGS, WeightingStrategy
from dhcbench.registry import Registry


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
    """DHC (Wang & Li, MICCAI 2023): DiffDW (α, τ) on branch A, DistDW (β) on branch B.

    Both V-Nets are Kaiming-initialised (reference §7). ``sup_loss`` and ``unsup_loss`` as
    in :class:`CoTraining` (``auto``: by variant). β must lie in (0, 1), α be > 0 and τ an
    integer >= 1 (a UserError naming the setting otherwise).
    """
    check_kwarg("beta", beta, low=0.0, high=1.0, low_open=True, high_open=True)
    check_kwarg("alpha", alpha, low=0.0, low_open=True)
    check_kwarg("tau", tau, integer=True, low=1)
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


def _register(key: str, title: str, family: str, *,
              variants: tuple[str, ...] = ("reference", "paper"), reference_lambda: str = "0.1",
              space: dict[str, Any] | None = None, **fields: Any) -> None:
    """:func:`register_method` with the co-training family's variants and search space.

    ``space`` adds to the learning rate and λ every method searches; ``fields`` are the
    other :class:`~dhcbench.methods.base.MethodInfo` fields and ``aliases``.
    """
    register_method(key, title=title, family=family, variants=variants,
                    reference_lambda=reference_lambda,
                    search_space={**LR_LAMBDA_SPACE, **(space or {})}, **fields)


def _register_pair(key: str, title: str, family: str, a: str, b: str | None = None,
                   pseudo: str = "hard", **fields: Any) -> None:
    """Register two V-Nets, Kaiming (A, weighting ``a``) and Xavier (B, ``b``, default ``a``).

    ``pseudo`` is the pseudo-labeler; ``fields`` go to :func:`_register`.
    """
    factory = _cotraining(Branch(a, "kaiming"), Branch(b or a, "xavier"), pseudo)
    _register(key, title, family, factory=factory, networks="2 V-Nets (Kaiming / Xavier)",
              **fields)


_register_pair(
    "cps", "CPS", "general", "uniform", aliases=("uniform-uniform",),
    reference_lambda="1 (train_cps.py default; scripts pass -w)",
    paper=one_line("""
        Chen et al., Semi-supervised semantic segmentation with cross pseudo supervision,
        CVPR 2021
    """),
    description=one_line("""
        Cross pseudo supervision: each V-Net learns the other's argmax; unweighted CE + Dice
        supervision (reference §8.1).
    """) + _LOSS_NOTE,
)
_register(
    "dhc", "DHC", "ours", factory=make_dhc, networks="2 V-Nets (Kaiming / Kaiming)",
    aliases=("diffdw-distdw",), reference_lambda="1 (train_dhc.py default; README passes 0.1)",
    space={"beta": ("float", 0.9, 0.999), "alpha": ("float", 0.05, 1.0),
           "tau": ("int", 10, 200)},
    paper=one_line("""
        Wang & Li, DHC: Dual-debiased Heterogeneous Co-training Framework for
        Class-imbalanced Semi-supervised Medical Image Segmentation, MICCAI 2023
    """),
    description=one_line("""
        DiffDW-weighted branch A and DistDW-weighted branch B with cross pseudo supervision
        (reference code's losses, EMAs and ×K scaling by default). variant='paper' uses the
        paper's Eq. 3-5 (windowed sums over τ, no Δ factor, no ×K), its CE-only supervised
        loss (Eq. 1) and its (CE + Dice) / 2 unsupervised loss (Eq. 2).
    """),
)
_register_pair(
    "crest", "CReST", "imbalance", "crest", variants=("reference",), aliases=("crest-crest",),
    reference_lambda="0.1 (train_crest.py default)",
    paper=one_line("""
        Wei et al., CReST: A class-rebalancing self-training framework for imbalanced
        semi-supervised learning, CVPR 2021
    """),
    description=one_line("""
        CPS with CReST class-rebalancing weights per branch from its own unlabeled argmax
        (EMA 0.99), in the supervised and unsupervised losses (reference §8.8).
    """),
)
_register_pair(
    "simis", "SimiS", "imbalance", "simis", variants=("reference",), aliases=("simis-simis",),
    reference_lambda="0.1 (train_simis.py default)",
    paper=one_line("""
        Chen et al., SimiS: Simple Imbalanced Semi-supervised learning (distribution
        weights), 2022
    """),
    description=one_line("""
        CPS with SimiS distribution weights per branch from its own argmax over the whole
        batch (EMA 0.99) (reference §8.9).
    """),
)
_register_pair(
    "depl", "DePL", "general", "uniform", pseudo="depl", variants=("reference", "fixed"),
    reference_lambda="1 (train_depl.py default)",
    paper="Wang et al., Debiased learning from naturally imbalanced pseudo-labels, CVPR 2022",
    description=one_line("""
        CPS whose pseudo-labels are debiased by per-voxel class priors (τ 1, confidence
        0.9). The reference computes DePL's adaptive margin but never uses it;
        variant='fixed' applies it, as the DePL paper (reference §8.6, §12 item 24).
    """),
)
_register_pair(
    "adsh", "Adsh", "imbalance", "uniform", pseudo="adsh", variants=("reference", "fixed"),
    reference_lambda="0.1 (train_adsh.py default)",
    paper=one_line("""
        Guo & Li, Class-imbalanced semi-supervised learning with adaptive thresholding, ICML
        2022
    """),
    description=one_line("""
        CPS with adaptive per-class thresholds from a (bounded, histogram) score bank. The
        reference multiplies the learner's logits by the other branch's threshold mask;
        variant='fixed' masks samples instead, as the Adsh paper (reference §8.7).
    """),
)
_register_pair(
    "cld", "CLD", "imbalance", "cld", pseudo="cld", variants=("reference",),
    reference_lambda="1 (train_cld.py default)",
    paper=one_line("""
        Lin et al., Calibrating label distribution for class-imbalanced barely-supervised
        knee segmentation, MICCAI 2022
    """),
    description=one_line("""
        CPS with fixed (N_max/N_k)^(1/3) class weights and confidence-based per-class
        sampling of the pseudo-labelled voxels (reference §8.11).
    """),
)

# -- ablation pairings: any two weightings on the two branches (paper Table 3) ---------------

#: DHC's own weightings: their same-weighting pairings (``distdw-distdw``, ``diffdw-diffdw``)
#: are in the "ours" family and take the weighting's key as an alias.
DHC_WEIGHTINGS = ("diffdw", "distdw")


def ablation_pairings(
    weightings: Registry[type[WeightingStrategy]] = WEIGHTINGS,
) -> list[tuple[str, str]]:
    """Every ordered pair ``(a, b)`` of registered weightings, sorted.

    ``a`` weighs branch A and ``b`` branch B; a strategy registered with ``@weighting``
    joins the ablation without further code.
    """
    return [(a, b) for a in weightings for b in weightings]


def _register_pairings() -> None:
    """Register ``<a>-<b>`` for every pairing, titled from the classes' ``title``."""
    for a, b in ablation_pairings():
        key = f"{a}-{b}"
        if key in METHODS:  # cps, dhc, crest and simis are pairings already
            continue
        title_a, title_b = WEIGHTINGS.get(a).title, WEIGHTINGS.get(b).title
        same_dw = a == b and a in DHC_WEIGHTINGS
        _register_pair(
            key, f"{title_a}-{title_b}", "ours" if same_dw else "ablation", a, b,
            aliases=(a,) if same_dw else (),
            paper="Wang & Li, MICCAI 2023, Table 3 (ablation of the branch weightings)",
            description=f"Co-training with {title_a} weights on branch A and {title_b} on"
                        " branch B, each in its branch's supervised and unsupervised losses."
                        + _LOSS_NOTE,
        )


_register_pairings()
