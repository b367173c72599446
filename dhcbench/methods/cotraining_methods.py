"""The co-training methods of the registry: CPS, DHC, CReST, SimiS, DePL, Adsh, CLD and the
ablation pairings of any two registered weighting strategies (paper Table 3), all built on
:class:`dhcbench.methods.cotraining.CoTraining`."""

from __future__ import annotations

from typing import Any

from dhcbench.methods.base import LR_LAMBDA_SPACE, METHODS, register_method
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
