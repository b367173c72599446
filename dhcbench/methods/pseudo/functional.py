"""The pure functions behind the pseudo-labelers (no state).

Adsh's score bank and rank thresholds, the UA-MT uncertainty, Basak et al.'s class
indicators and difficulty, and the sampling rate shared by CLD and Basak. The labelers keep
the state and call these.
"""

from __future__ import annotations

import math

import torch

from dhcbench.methods.losses import class_argmax, class_histogram, one_hot
from dhcbench.schedules import schedule_time, sigmoid_rampup


def bank_counts(probs: torch.Tensor, major_threshold: float, bins: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adsh's bank increments from float softmax maps ``(B, K, D, H, W)``.

    Returns int64 counts: voxels predicted per class (K,), those of them above
    ``major_threshold`` (K,), and per class a histogram of its probabilities over [0, 1] in
    ``bins`` bins (K, bins).
    """
    k = probs.shape[1]
    flat = probs.movedim(1, -1).reshape(-1, k).double()
    pred = class_argmax(flat, 1)
    conf = flat.gather(1, pred[:, None])[:, 0] > major_threshold
    idx = (flat * bins).long().clamp_(0, bins - 1)
    offsets = torch.arange(k, device=flat.device) * bins
    hist = class_histogram(idx + offsets, k * bins).view(k, bins)
    return class_histogram(pred, k), class_histogram(pred, k, conf.long()), hist


def rank_thresholds(pred_counts: torch.Tensor, confident: torch.Tensor, hist: torch.Tensor
                    ) -> torch.Tensor:
    """Adsh's per-class thresholds (K,) float32 from a bank (reference §8.7).

    With the majority class m and ``ρ = confident_m / N_m``, class c's threshold is its
    probability at rank ``int(ρ N_c)`` among all bank voxels in descending order — the lower
    edge of the histogram bin holding that rank, so exact to one bin. ``pred_counts`` and
    ``confident`` are (K,), ``hist`` (K, bins), as summed from :func:`bank_counts`.
    """
    bins = hist.shape[1]
    m = int(class_argmax(pred_counts, 0))
    rho = float(confident[m] / pred_counts[m].clamp_min(1))
    ranks = torch.floor(rho * pred_counts)  # 0-based rank among all bank voxels, descending
    from_top = hist.flip(1).cumsum(1)  # cumulative counts from the top bin down
    bin_from_top = torch.searchsorted(from_top.contiguous(), (ranks + 1)[:, None]).clamp(
        max=bins - 1)[:, 0]
    return ((bins - 1 - bin_from_top).double() / bins).float()


def sampling_rate(difficulty: torch.Tensor, power: float) -> torch.Tensor:
    """Per-class sampling rate ``((1 - d) / max(1 - d)) ** power``, (K,) like ``difficulty``.

    CLD's rate from its confidences (power 0.5) and Basak et al.'s from their difficulty CC
    (2.5).
    """
    gap = 1.0 - difficulty
    return (gap / gap.max()) ** power


def uamt_threshold(epoch: int, max_epochs: int, num_classes: int, variant: str) -> float:
    """UA-MT's uncertainty threshold ``(0.75 + 0.25 r(t)) · H_max``.

    r is the sigmoid ramp-up over the run; H_max = ln 2 in the reference (kept from the
    binary task), ln K when ``variant == "fixed"``.
    """
    h_max = math.log(num_classes) if variant == "fixed" else math.log(2.0)
    return (0.75 + 0.25 * sigmoid_rampup(schedule_time(epoch), max_epochs)) * h_max


def predictive_entropy(mean_probs: torch.Tensor) -> torch.Tensor:
    """``-Σ_c p̄_c ln(p̄_c + 1e-6)`` of (B, K, D, H, W) probabilities, a (B, 1, D, H, W) map."""
    return -(mean_probs * torch.log(mean_probs + 1e-6)).sum(1, keepdim=True)


def class_indicators(logits_l: torch.Tensor, labels: torch.Tensor, num_classes: int
                     ) -> torch.Tensor:
    """Basak et al.'s class indicators (3, K) float32 on the labeled patches.

    From logits (B, K, D, H, W) and labels (B, D, H, W) int64: per class, over its labeled
    voxels, the means of Σ_j p_c ln(p_j + 1e-12), p_c and max_j p_j - p_c (the reference's
    "entropy", confidence and variance).
    """
    k = num_classes
    p = torch.softmax(logits_l.float(), 1)
    p_true = (p * one_hot(labels, k)).sum(1)  # p_c at each voxel of class c
    log_sum = torch.log(p + 1e-12).sum(1)
    values = torch.stack([p_true * log_sum, p_true, p.max(1).values - p_true])  # (3, B…)
    flat_y = labels.reshape(-1)
    sums = torch.stack([torch.bincount(flat_y, weights=v.reshape(-1), minlength=k)
                        for v in values])
    counts = torch.bincount(flat_y, minlength=k).float()
    return sums / (counts + 1e-12)


def class_difficulty(mean_indicators: torch.Tensor, top_m: int, penalty: float
                     ) -> torch.Tensor:
    """Basak et al.'s current difficulty (K,) from the mean indicators (3, K).

    Reference §8.10 steps 1-4: R = softmax per indicator, Gompertz G = 1 - exp(-exp(-2R))
    kept at its ``top_m`` smallest entries (``penalty`` elsewhere, where R is zeroed);
    ``CFS ⊙ FR`` with CFS = 1 - ΣR/3 and FR = ΣG, divided by its max.
    """
    r = torch.softmax(mean_indicators, dim=1)
    g = 1.0 - torch.exp(-torch.exp(-2.0 * r))
    keep = torch.zeros_like(g, dtype=torch.bool)
    keep.scatter_(1, torch.argsort(g, dim=1)[:, :top_m], True)
    g = torch.where(keep, g, torch.full_like(g, penalty))
    r = torch.where(keep, r, torch.zeros_like(r))
    current = (1.0 - r.sum(0) / 3.0) * g.sum(0)
    return current / current.max()


def true_class_sums(logits_l: torch.Tensor, labels: torch.Tensor, num_classes: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """CLD's bank increments, two (K,) float32: true-class softmax sums and voxel counts.

    Per class, over its labeled voxels of ``labels`` (B, D, H, W) int64, the sum of the
    true-class softmax of ``logits_l`` (B, K, D, H, W), and how many voxels there are.
    """
    true = torch.softmax(logits_l.float(), dim=1).gather(1, labels[:, None])[:, 0]
    flat_y = labels.reshape(-1)
    return (torch.bincount(flat_y, weights=true.reshape(-1), minlength=num_classes).float(),
            torch.bincount(flat_y, minlength=num_classes).float())


def refreshed_confidence(conf: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor,
                         momentum: float, replace: bool) -> torch.Tensor:
    """CLD's per-class confidence (K,) after a refresh from the bank.

    From the bank's sums and counts (K,) of the true-class probability: the bank's mean
    where a class was seen (``replace``, the first refresh) or an EMA towards it with
    ``momentum``; unseen classes keep theirs.
    """
    seen = counts > 0
    current = conf.to(seen.device).clone()
    current[seen] = sums[seen] / counts[seen]
    old = conf.to(seen.device)
    return current if replace else torch.where(seen, momentum * old + (1 - momentum) * current,
                                               old)
