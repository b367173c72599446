"""The pure functions behind the class-weighting strategies (no state, no classes).

Counts are voxel counts per class ``(K,)`` with the background included; every function
returns ``(K,)`` float64 and computes on its inputs' device. The strategies in this package
keep the state (EMAs, windows) and call these for the per-iteration math.
"""

from __future__ import annotations

import torch

from dhcbench.methods.losses import class_argmax, class_histogram

#: The epsilon of the reference code's count ratios and DiffDW's speed ratio.
EPS = 1e-8


def argmax_histogram(logits: torch.Tensor) -> torch.Tensor:
    """Voxel count per class (K,) float64 of ``argmax(logits, 1)``; background included."""
    return class_histogram(class_argmax(logits), logits.shape[1]).double()


def ema(average: torch.Tensor, value: torch.Tensor | float, momentum: float) -> torch.Tensor:
    """One step of an exponential moving average.

    Returns ``momentum * average + (1 - momentum) * value`` (DHC's β for DistDW, 0.99 for
    CReST and SimiS, (τ-1)/τ for DiffDW), of ``average``'s shape; tensors are (K,) float64
    in this package.
    """
    return momentum * average + (1.0 - momentum) * value


def distdw_weights(counts: torch.Tensor, scale_by_k: bool = True) -> torch.Tensor:
    """DistDW raw weights (paper Eq. 3, reference §7.1): ``ln P_k / max_j ln P_j`` (× K).

    ``P_k = (max_j N_j + 1e-8) / (N_k + 1e-8)``; the majority class gets exactly 0, the
    rarest 1 (or K when ``scale_by_k``). ``counts`` (K,) -> (K,) float64. When every class
    has the same count the reference divides 0 by 0; here all weights are 0 then.
    """
    n = counts.double()
    log_p = torch.log((n.max() + EPS) / (n + EPS))
    w = log_p / log_p.max().clamp_min(torch.finfo(torch.float64).tiny)
    return w * n.numel() if scale_by_k else w


def diffdw_speed_terms(
    dice: torch.Tensor, last_dice: torch.Tensor, reference: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffDW's per-iteration learning and unlearning terms (paper Eq. 5, reference §7.2).

    From this iteration's hard Dice λ_t and the last one λ_{t-1} (both (K,) float64), with
    ``Δ = λ_t - λ_{t-1}``: ``reference=True`` gives ``Δ · ln(λ_t / λ_{t-1})`` (the official
    code's extra Δ factor), ``reference=False`` gives ``|ln(λ_t / λ_{t-1})|`` (the paper;
    the literal Eq. 5 term is ≤ 0 for the unlearning part, whose magnitude is what the ratio
    needs). Returns ``(learn, unlearn)``: the term where Δ > 0, resp. Δ ≤ 0, and 0 elsewhere.
    """
    delta = dice - last_dice
    log_ratio = torch.log(dice / last_dice)
    zero = torch.zeros_like(dice)
    term = delta * log_ratio if reference else log_ratio.abs()
    return torch.where(delta > 0, term, zero), torch.where(delta <= 0, term, zero)


def diffdw_weights(
    learn: torch.Tensor, unlearn: torch.Tensor, reversed_dice: torch.Tensor, alpha: float,
    scale: float = 1.0,
) -> torch.Tensor:
    """DiffDW weights (paper Eq. 5, reference §7.2) from the accumulated terms (K,).

    ``d_k = ((unlearn_k + 1e-8) / (learn_k + 1e-8)) ** alpha`` (how fast class k is being
    unlearned rather than learned) times the accumulated reversed Dice ``1 - λ`` (hard
    classes weigh more), normalised by its max and multiplied by ``scale`` (K in the
    reference code, 1 in the paper).
    """
    speed = ((unlearn + EPS) / (learn + EPS)) ** alpha
    w = speed * reversed_dice
    return scale * w / w.max()


def crest_weights(counts: torch.Tensor, power: float = 1.0 / 3.0) -> torch.Tensor:
    """CReST weights (Wei et al., CVPR 2021; reference §8.8) from class counts (K,).

    ``mu_k = ((N_k + 1e-8) / (N_max + 1e-8)) ** power``; classes are ranked by mu in
    descending order (stable: ties keep ascending class index) and the class at rank r gets
    the mu of the class at rank K-1-r, so the most frequent class gets the smallest mu and
    the rarest gets 1. Among tied classes the higher index receives the larger weight.
    """
    n = counts.double()
    mu = ((n + EPS) / (n.max() + EPS)) ** power
    order = torch.sort(-mu, stable=True).indices  # descending, ties in ascending index order
    w = torch.empty_like(mu)
    w[order] = mu[order].flip(0)
    return w


def simis_weights(counts: torch.Tensor) -> torch.Tensor:
    """SimiS weights (Chen et al., 2022; reference §8.9): ``K * (max_j p_j - p_k)``.

    ``p_k = (N_k + 1e-8) / (sum N + 1e-8)``; the majority class gets 0.
    """
    n = counts.double()
    p = (n + EPS) / (n.sum() + EPS)
    return n.numel() * (p.max() - p)


def cld_weights(counts: torch.Tensor, power: float = 1.0 / 3.0) -> torch.Tensor:
    """CLD's fixed class weights (Lin et al., MICCAI 2022; reference §8.11).

    From the labeled counts (K,): ``(max N / N_k) ** power`` (K,) float64 with no epsilon,
    so a class absent from the labeled set gets an infinite weight (:class:`CLDWeights`
    refuses that).
    """
    n = counts.double()
    return (n.max() / n) ** power
