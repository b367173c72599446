"""Class-weighting strategies: DistDW and DiffDW (DHC) and the CReST / SimiS baselines.

Every strategy maps what a branch sees in one iteration to a class-weight vector ``(K,)``
(K counts the background) used in that branch's supervised and unsupervised losses:

- ``reset(labeled_counts)`` -> the initial weights, from the voxel counts ``(K,)`` of the
  labeled ground truth (whole labeled volumes);
- ``update(logits_l=..., labels_l=..., logits_u=...)`` -> this iteration's weights. Logits are
  ``(B, K, D, H, W)``, labels ``(B, D, H, W)`` long; each strategy reads what it needs and
  ignores the rest. Call it under ``torch.no_grad()``.

``variant="reference"`` (default) reproduces the official DHC code exactly (reference §7.1,
§7.2, §8.8, §8.9), including its ×K scaling and EMA forms; ``variant="paper"`` follows the
DHC paper's Eq. 3–5 where they differ (reference §12 items 3–9). Strategies keep their state
as tensors and export it through ``state_dict`` so a resumed run continues exactly. All
histograms are computed on the logits' device with ``bincount`` (no host round-trip).
"""

from __future__ import annotations

import torch

from dhcbench.methods.losses import class_argmax, hard_dice_per_class
from dhcbench.registry import Registry

VARIANTS = ("reference", "paper")
_EPS = 1e-8


def argmax_histogram(logits: torch.Tensor) -> torch.Tensor:
    """Voxel count per class (K,) float64 of ``argmax(logits, 1)``; background included."""
    k = logits.shape[1]
    return torch.bincount(class_argmax(logits).reshape(-1), minlength=k).double()


def distdw_weights(counts: torch.Tensor, scale_by_k: bool = True) -> torch.Tensor:
    """DistDW raw weights (paper Eq. 3, reference §7.1): ``ln P_k / max_j ln P_j`` (× K).

    ``P_k = (max_j N_j + 1e-8) / (N_k + 1e-8)``; the majority class gets exactly 0, the
    rarest 1 (or K when ``scale_by_k``). ``counts`` (K,) -> (K,) float64. When every class
    has the same count the reference divides 0 by 0; here all weights are 0 then.
    """
    n = counts.double()
    log_p = torch.log((n.max() + _EPS) / (n + _EPS))
    w = log_p / log_p.max().clamp_min(torch.finfo(torch.float64).tiny)
    return w * n.numel() if scale_by_k else w


def crest_weights(counts: torch.Tensor, power: float = 1.0 / 3.0) -> torch.Tensor:
    """CReST weights (Wei et al., CVPR 2021; reference §8.8) from class counts (K,).

    ``mu_k = ((N_k + 1e-8) / (N_max + 1e-8)) ** power``; classes are ranked by mu in
    descending order (stable: ties keep ascending class index) and the class at rank r gets
    the mu of the class at rank K-1-r, so the most frequent class gets the smallest mu and
    the rarest gets 1. Among tied classes the higher index receives the larger weight.
    """
    n = counts.double()
    mu = ((n + _EPS) / (n.max() + _EPS)) ** power
    order = torch.sort(-mu, stable=True).indices  # descending, ties in ascending index order
    w = torch.empty_like(mu)
    w[order] = mu[order].flip(0)
    return w


def simis_weights(counts: torch.Tensor) -> torch.Tensor:
    """SimiS weights (Chen et al., 2022; reference §8.9): ``K * (max_j p_j - p_k)``.

    ``p_k = (N_k + 1e-8) / (sum N + 1e-8)``; the majority class gets 0.
    """
    n = counts.double()
    p = (n + _EPS) / (n.sum() + _EPS)
    return n.numel() * (p.max() - p)


class WeightingStrategy:
    """Base class: holds the current weights and the tensors of its state."""

    #: Names of the tensor attributes that make up the state (exported by state_dict).
    state_names: tuple[str, ...] = ("weights",)

    def __init__(self, num_classes: int, variant: str = "reference") -> None:
        if variant == "fixed":  # methods' "fixed" variant: the strategies as in the code
            variant = "reference"
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if num_classes < 2:
            raise ValueError("num_classes counts the background and must be >= 2")
        self.num_classes = num_classes
        self.variant = variant
        self.weights = torch.ones(num_classes, dtype=torch.float64)

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        """Initialise from the labeled ground truth's voxel counts (K,); returns (K,) float32."""
        raise NotImplementedError

    def update(
        self,
        logits_l: torch.Tensor | None = None,
        labels_l: torch.Tensor | None = None,
        logits_u: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """This iteration's weights (K,) float32, on the logits' device."""
        raise NotImplementedError

    def current(self) -> torch.Tensor:
        """The latest weights (K,) float32."""
        return self.weights.float()

    def to(self, device: torch.device | str) -> WeightingStrategy:
        """Move the state tensors to ``device``."""
        for name in self.state_names:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the state tensors."""
        return {name: getattr(self, name).detach().clone() for name in self.state_names}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore tensors written by :meth:`state_dict` (kept on their current device)."""
        for name in self.state_names:
            current = getattr(self, name)
            setattr(self, name, state[name].to(device=current.device, dtype=current.dtype))


class Uniform(WeightingStrategy):
    """All-ones weights: the unweighted losses of CPS and the other 'Org' branches."""

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        self.weights = torch.ones(self.num_classes, dtype=torch.float64,
                                  device=labeled_counts.device)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        return self.current()


class DistDW(WeightingStrategy):
    """Distribution-aware debiasing weighting (DHC, Wang & Li, MICCAI 2023, Eq. 3–4).

    Counts the branch's argmax over the unlabeled patches (background included), turns them
    into ``ln(N_max / N_k) / max ln(...)`` weights (×K in the reference code) and smooths
    them with an EMA ``W <- momentum * W + (1 - momentum) * w`` (β = 0.99 in DHC).
    Background, the majority class, therefore gets weight exactly 0. ``variant="paper"``
    omits the ×K scaling (the paper does not mention it; it cancels in the weighted-mean CE
    but not in the Dice term).
    """

    def __init__(
        self, num_classes: int, momentum: float = 0.99, variant: str = "reference"
    ) -> None:
        super().__init__(num_classes, variant)
        self.momentum = momentum

    def _raw(self, counts: torch.Tensor) -> torch.Tensor:
        return distdw_weights(counts, scale_by_k=self.variant == "reference")

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        self.weights = self._raw(labeled_counts)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        if logits_u is None:
            raise ValueError("DistDW.update needs logits_u (the unlabeled half of the batch)")
        w = self._raw(argmax_histogram(logits_u))
        self.weights = self.momentum * self.weights.to(w.device) + (1.0 - self.momentum) * w
        return self.current()


class DiffDW(WeightingStrategy):
    """Difficulty-aware debiasing weighting (DHC, Wang & Li, MICCAI 2023, Eq. 5).

    Each iteration measures the hard Dice λ_t per class (background included) of the branch
    on the labeled patches, and how fast each class is being learned (λ rises) or unlearned
    (λ falls): ``d_k = ((unlearn_k + ε) / (learn_k + ε)) ** alpha``; the weight is ``d_k``
    times the accumulated ``1 - λ_t`` (hard classes weigh more), normalised by its max.

    ``variant="reference"`` (the official code, reference §7.2): the speed terms are
    ``Δ · ln(λ_t / λ_{t-1})`` (with the extra Δ factor) accumulated by an EMA of momentum
    ``(τ-1)/τ``, the reversed Dice likewise (starting from 1), and the result is ×K.
    ``variant="paper"``: windowed sums over the last τ iterations of ``|ln(λ_t/λ_{t-1})|``
    split by the sign of Δ (the literal Eq. 5 term is ≤ 0 for the unlearning part, whose
    magnitude is what the ratio needs) and of ``1 - λ_t``, normalised by the max, no ×K.
    """

    state_names = ("weights", "last_dice", "learn", "unlearn", "dice_weight", "window", "filled")

    def __init__(
        self,
        num_classes: int,
        accumulate_iters: int = 50,
        alpha: float = 0.2,
        variant: str = "reference",
    ) -> None:
        super().__init__(num_classes, variant)
        if accumulate_iters < 1:
            raise ValueError("accumulate_iters (tau) must be >= 1")
        self.tau = int(accumulate_iters)
        self.alpha = alpha
        self._init_state(torch.device("cpu"))

    def _init_state(self, device: torch.device) -> None:
        k = self.num_classes
        f64 = torch.float64
        self.weights = torch.full((k,), float(k), dtype=f64, device=device)
        self.last_dice = torch.full((k,), _EPS, dtype=f64, device=device)
        self.learn = torch.zeros(k, dtype=f64, device=device)
        self.unlearn = torch.zeros(k, dtype=f64, device=device)
        self.dice_weight = torch.ones(k, dtype=f64, device=device)
        # Paper variant: ring buffer of the last τ (learn, unlearn, 1 - λ) rows.
        self.window = torch.zeros(self.tau, 3, k, dtype=f64, device=device)
        self.filled = torch.zeros((), dtype=torch.long, device=device)

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        """K·1 whatever the counts (the reference's ``init_weights``); clears the history."""
        self._init_state(labeled_counts.device)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        if logits_l is None or labels_l is None:
            raise ValueError("DiffDW.update needs logits_l and labels_l (the labeled half)")
        dice = hard_dice_per_class(logits_l, labels_l).double()
        if self.last_dice.device != dice.device:
            self.to(dice.device)
        delta = dice - self.last_dice
        log_ratio = torch.log(dice / self.last_dice)
        self.last_dice = dice
        zero = torch.zeros_like(dice)
        if self.variant == "reference":
            learn = torch.where(delta > 0, delta * log_ratio, zero)
            unlearn = torch.where(delta <= 0, delta * log_ratio, zero)
            mu = (self.tau - 1) / self.tau
            self.learn = mu * self.learn + (1 - mu) * learn
            self.unlearn = mu * self.unlearn + (1 - mu) * unlearn
            self.dice_weight = mu * self.dice_weight + (1 - mu) * (1.0 - dice)
            learn_acc, unlearn_acc, reversed_dice = self.learn, self.unlearn, self.dice_weight
            scale = float(self.num_classes)
        else:
            row = torch.stack([
                torch.where(delta > 0, log_ratio.abs(), zero),
                torch.where(delta <= 0, log_ratio.abs(), zero),
                1.0 - dice,
            ])
            self.window[self.filled % self.tau] = row
            self.filled = self.filled + 1
            learn_acc, unlearn_acc, reversed_dice = self.window.sum(0)
            scale = 1.0
        speed = ((unlearn_acc + _EPS) / (learn_acc + _EPS)) ** self.alpha
        w = speed * reversed_dice
        self.weights = scale * w / w.max()
        return self.current()


class CReST(WeightingStrategy):
    """CReST class-rebalancing weights (Wei et al., CVPR 2021) as adapted by the DHC code.

    Counts the branch's own argmax on the unlabeled patches, maps them with
    :func:`crest_weights` (no ×K) and smooths with an EMA (0.99), initialised from the
    labeled ground truth (reference §8.8).
    """

    def __init__(
        self, num_classes: int, momentum: float = 0.99, power: float = 1.0 / 3.0,
        variant: str = "reference",
    ) -> None:
        super().__init__(num_classes, variant)
        self.momentum = momentum
        self.power = power

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        self.weights = crest_weights(labeled_counts, self.power)
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        if logits_u is None:
            raise ValueError("CReST.update needs logits_u (the unlabeled half of the batch)")
        w = crest_weights(argmax_histogram(logits_u), self.power)
        self.weights = self.momentum * self.weights.to(w.device) + (1.0 - self.momentum) * w
        return self.current()


class SimiS(WeightingStrategy):
    """SimiS distribution weights (Chen et al., 2022) as adapted by the DHC code.

    Counts the branch's own argmax over the whole batch (labeled and unlabeled), maps them
    with :func:`simis_weights` and smooths with an EMA (0.99). The initial weights are the
    labeled distribution passed once through that EMA from K·1 (reference §8.9).
    """

    def __init__(
        self, num_classes: int, momentum: float = 0.99, variant: str = "reference"
    ) -> None:
        super().__init__(num_classes, variant)
        self.momentum = momentum

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        k = self.num_classes
        start = torch.full((k,), float(k), dtype=torch.float64, device=labeled_counts.device)
        w = simis_weights(labeled_counts)
        self.weights = self.momentum * start + (1.0 - self.momentum) * w
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        parts = [t for t in (logits_l, logits_u) if t is not None]
        if not parts:
            raise ValueError("SimiS.update needs logits_l and/or logits_u")
        counts = sum(argmax_histogram(t) for t in parts)
        w = simis_weights(counts)  # type: ignore[arg-type]
        self.weights = self.momentum * self.weights.to(w.device) + (1.0 - self.momentum) * w
        return self.current()


class CLDWeights(WeightingStrategy):
    """CLD's fixed class weights (Lin et al., MICCAI 2022; reference §8.11): ``(max N / N_k)
    ** (1/3)`` from the labeled ground truth, background included, no epsilon, no ×K. A class
    absent from the labeled set would get an infinite weight: that is refused with an error
    (draw the labeled cases with ``data.cover_classes=true``)."""

    def __init__(self, num_classes: int, power: float = 1.0 / 3.0, variant: str = "reference"
                 ) -> None:
        super().__init__(num_classes, variant)
        self.power = power

    def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
        n = labeled_counts.double()
        if bool((n == 0).any()):
            from dhcbench.errors import UserError

            missing = [int(i) for i in torch.nonzero(n == 0).flatten()]
            raise UserError(
                f"CLD weights: class(es) {missing} are absent from the labeled set, which gives"
                " an infinite weight; use data.cover_classes=true or another ratio"
            )
        self.weights = (n.max() / n) ** self.power
        return self.current()

    def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
        return self.current()


#: Weighting strategies by key; pairings such as ``diffdw-distdw`` combine two of them.
WEIGHTINGS: Registry[type[WeightingStrategy]] = Registry("weighting")
WEIGHTINGS.add("uniform", Uniform)
WEIGHTINGS.add("distdw", DistDW)
WEIGHTINGS.add("diffdw", DiffDW)
WEIGHTINGS.add("crest", CReST)
WEIGHTINGS.add("simis", SimiS)
WEIGHTINGS.add("cld", CLDWeights)

__all__ = [
    "WEIGHTINGS",
    "CReST",
    "DiffDW",
    "DistDW",
    "SimiS",
    "Uniform",
    "WeightingStrategy",
    "argmax_histogram",
    "crest_weights",
    "distdw_weights",
    "simis_weights",
]
