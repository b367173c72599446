"""Unit tests of the class-weighting strategies (dhcbench.methods.weighting).

What is pinned and where the expected numbers come from:

- DistDW (reference §7.1): ``w_k = K * ln P_k / max_j ln P_j`` with
  ``P_k = (max N + 1e-8) / (N_k + 1e-8)``, the worked example of §7.1 (recomputed here with
  ``math.log``), the paper variant (= reference / K, §12), ``reset`` (§7.2a) and the EMA
  ``W <- 0.99 W + 0.01 w`` over the argmax histogram of ``logits_u`` (background included).
- DiffDW (reference §7.2 / §7.2a): the step-by-step recipe re-implemented below in plain
  Python floats (``_diffdw_reference_hand`` / ``_diffdw_paper_hand``) on hand-built label
  volumes whose per-class hard Dice values are worked out in the comments.
- CReST (§8.8): the reversed-rank mapping including the tie rule, EMA from ``logits_u``.
- SimiS (§8.9): ``K (max p - p_k)``, the EMA'd init and counts over labeled + unlabeled.
- The contract of every registered strategy in both variants (``VARIANTS``): state_dict
  round trip, device move, resume equality, finite (K,) float32 weights, an absent labeled
  class refused only where the class says so; titles; a decorated class joining the
  registry and the ablation pairings.

Logits with a known argmax are built from a chosen label map (one-hot × 10), so each
histogram below is a plain count of the label map.
"""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import pytest
import torch

import dhcbench.methods.weighting as weighting_package
import dhcbench.methods.weighting.base as weighting_base
from dhcbench.errors import UserError
from dhcbench.methods import METHODS
from dhcbench.methods.cotraining_methods import ablation_pairings
from dhcbench.methods.weighting import (
    VARIANTS,
    WEIGHTINGS,
    CReST,
    DiffDW,
    DistDW,
    SimiS,
    Uniform,
    WeightingStrategy,
    argmax_histogram,
    crest_weights,
    distdw_weights,
    simis_weights,
    weighting,
)
from dhcbench.registry import Registry

EPS = 1e-8


def logits_from_labels(labels: list, num_classes: int) -> torch.Tensor:
    """(B, K, D, H, W) float32 logits whose argmax is exactly ``labels`` (B, D, H, W)."""
    y = torch.tensor(labels, dtype=torch.long)
    return torch.nn.functional.one_hot(y, num_classes).movedim(-1, 1).float() * 10.0


def flat_counts(labels: list, num_classes: int) -> list[float]:
    """Per-class voxel count of a nested list, by plain Python counting."""
    out = [0.0] * num_classes

    def walk(x):  # noqa: ANN001, ANN202
        if isinstance(x, list):
            for v in x:
                walk(v)
        else:
            out[x] += 1.0

    walk(labels)
    return out


def distdw_hand(counts: list[float], scale_by_k: bool = True) -> list[float]:
    """DistDW formula (reference §7.1) in plain floats."""
    nmax = max(counts)
    logp = [math.log((nmax + EPS) / (n + EPS)) for n in counts]
    m = max(logp)
    k = len(counts) if scale_by_k else 1
    return [k * v / m for v in logp]


def approx_list(values: list[float], rel: float = 1e-9, abs_: float = 1e-12):  # noqa: ANN201
    return pytest.approx(values, rel=rel, abs=abs_)


# --------------------------------------------------------------------------------------------
# argmax_histogram
# --------------------------------------------------------------------------------------------


def test_argmax_histogram_counts_background_and_absent_classes() -> None:
    labels = [[[[0, 0, 2, 2, 2]]]]  # (B=1, D=1, H=1, W=5); class 1 and 3 absent
    h = argmax_histogram(logits_from_labels(labels, 4))
    assert h.dtype == torch.float64
    assert h.tolist() == [2.0, 0.0, 3.0, 0.0]


# --------------------------------------------------------------------------------------------
# DistDW
# --------------------------------------------------------------------------------------------

# Reference §7.1 worked example: K = 14, bg 2e6, liver 1e5, spleen 2e4, adrenal 200,
# 10 other classes at 5e3.
EXAMPLE = [2e6, 1e5, 2e4, 200.0] + [5e3] * 10


def test_distdw_weights_reference_worked_example() -> None:
    w = distdw_weights(torch.tensor(EXAMPLE, dtype=torch.float64))
    # Hand: max ln P = ln(2e6 / 200) = ln(1e4) (adrenal is the rarest), so
    # liver = 14 ln 20 / ln 1e4, spleen = 14 ln 100 / ln 1e4, others = 14 ln 400 / ln 1e4.
    den = math.log((2e6 + EPS) / (200 + EPS))
    expected = [0.0,
                14 * math.log((2e6 + EPS) / (1e5 + EPS)) / den,
                14 * math.log((2e6 + EPS) / (2e4 + EPS)) / den,
                14.0] + [14 * math.log((2e6 + EPS) / (5e3 + EPS)) / den] * 10
    assert w.dtype == torch.float64 and w.shape == (14,)
    assert w.tolist() == approx_list(expected)
    # The rounded figures printed in the reference: 0 / 4.55 / 7.0 / 14 / 9.1
    # (exact: 0 / 4.5536 / 7.0000 / 14 / 9.1072).
    assert w.tolist()[:5] == pytest.approx([0.0, 4.55, 7.0, 14.0, 9.1], abs=0.01)
    assert w[0].item() == 0.0  # majority class exactly 0


def test_distdw_weights_with_an_absent_class() -> None:
    counts = list(EXAMPLE)
    counts[3] = 0.0  # adrenal never seen: ln((2e6 + 1e-8) / 1e-8) ~ 33 becomes the normaliser
    w = distdw_weights(torch.tensor(counts, dtype=torch.float64))
    den = math.log((2e6 + EPS) / EPS)
    expected = [0.0,
                14 * math.log((2e6 + EPS) / (1e5 + EPS)) / den,
                14 * math.log((2e6 + EPS) / (2e4 + EPS)) / den,
                14.0] + [14 * math.log((2e6 + EPS) / (5e3 + EPS)) / den] * 10
    assert w.tolist() == approx_list(expected)
    # Reference prints 0 / 1.27 / 1.96 / 14 / 2.55; the exact values are 0 / 1.2698 /
    # 1.9520 / 14 / 2.5396 (the printed figures are rounded loosely), so compare at 0.011.
    assert w.tolist()[:5] == pytest.approx([0.0, 1.27, 1.96, 14.0, 2.55], abs=0.011)


def test_distdw_paper_variant_is_reference_over_k() -> None:
    counts = torch.tensor(EXAMPLE, dtype=torch.float64)
    ref = distdw_weights(counts, scale_by_k=True)
    paper = distdw_weights(counts, scale_by_k=False)
    assert paper.tolist() == approx_list([v / 14 for v in ref.tolist()])
    assert paper.max().item() == pytest.approx(1.0)


def test_distdw_all_equal_counts_give_zero_weights_not_nan() -> None:
    w = distdw_weights(torch.tensor([5.0, 5.0, 5.0]))
    assert w.tolist() == [0.0, 0.0, 0.0]


def test_distdw_reset_is_formula_on_labeled_counts_times_k() -> None:
    s = DistDW(14)
    out = s.reset(torch.tensor([int(c) for c in EXAMPLE], dtype=torch.int64))
    assert out.dtype == torch.float32 and out.shape == (14,)
    assert out.tolist() == pytest.approx(distdw_hand(EXAMPLE), rel=1e-6)
    paper = DistDW(14, variant="paper").reset(torch.tensor(EXAMPLE))
    assert paper.tolist() == pytest.approx(distdw_hand(EXAMPLE, scale_by_k=False), rel=1e-6)


# Label volumes used for the EMA updates: K = 4, B = 2, spatial (1, 2, 3) -> 12 voxels.
UNL_1 = [[[[0, 0, 0], [0, 1, 2]]], [[[0, 0, 0], [0, 0, 3]]]]   # counts 9 / 1 / 1 / 1
UNL_2 = [[[[0, 1, 1], [0, 1, 2]]], [[[2, 2, 0], [0, 0, 0]]]]   # class 3 absent


def test_distdw_update_ema_two_steps() -> None:
    k = 4
    c1 = flat_counts(UNL_1, k)
    c2 = flat_counts(UNL_2, k)
    assert c1 == [9.0, 1.0, 1.0, 1.0] and c2 == [6.0, 3.0, 3.0, 0.0]  # hand counts
    labeled = [100.0, 20.0, 5.0, 1.0]

    s = DistDW(k)  # default momentum 0.99
    assert s.momentum == 0.99
    w0 = distdw_hand(labeled)
    assert s.reset(torch.tensor(labeled)).tolist() == pytest.approx(w0, rel=1e-6)

    # Raw weights by hand: step 1: all foreground at 1 -> ln 9 / ln 9 = 1 -> 4 each, bg 0.
    raw1 = distdw_hand(c1)
    assert raw1 == pytest.approx([0.0, 4.0, 4.0, 4.0])
    w1 = [0.99 * a + 0.01 * b for a, b in zip(w0, raw1, strict=True)]
    # logits_l is ignored by DistDW: pass something that would change the histogram.
    out1 = s.update(logits_l=logits_from_labels(UNL_2, k), labels_l=None,
                    logits_u=logits_from_labels(UNL_1, k))
    assert out1.dtype == torch.float32 and out1.shape == (k,)
    assert out1.tolist() == pytest.approx(w1, rel=1e-6)
    assert out1[0].item() == 0.0  # background stays exactly 0

    # Step 2: class 3 absent -> normaliser ln((6 + 1e-8) / 1e-8), classes 1, 2: ln 2.
    raw2 = distdw_hand(c2)
    den = math.log((6 + EPS) / EPS)
    assert raw2 == pytest.approx([0.0, 4 * math.log(2) / den, 4 * math.log(2) / den, 4.0])
    w2 = [0.99 * a + 0.01 * b for a, b in zip(w1, raw2, strict=True)]
    out2 = s.update(logits_u=logits_from_labels(UNL_2, k))
    assert out2.tolist() == pytest.approx(w2, rel=1e-6)
    assert s.current().tolist() == pytest.approx(w2, rel=1e-6)


def test_distdw_update_custom_momentum_and_paper_variant() -> None:
    k = 4
    labeled = [100.0, 20.0, 5.0, 1.0]
    s = DistDW(k, momentum=0.5, variant="paper")
    w0 = distdw_hand(labeled, scale_by_k=False)
    s.reset(torch.tensor(labeled))
    raw = distdw_hand(flat_counts(UNL_2, k), scale_by_k=False)
    out = s.update(logits_u=logits_from_labels(UNL_2, k))
    assert out.tolist() == pytest.approx([0.5 * a + 0.5 * b for a, b in zip(w0, raw, strict=True)],
                                         rel=1e-6)


def test_distdw_update_requires_logits_u() -> None:
    s = DistDW(3)
    with pytest.raises(ValueError):
        s.update(logits_l=torch.zeros(1, 3, 1, 1, 1))


# --------------------------------------------------------------------------------------------
# DiffDW
# --------------------------------------------------------------------------------------------
# Labeled half used below: K = 3, B = 2, spatial (1, 1, 4). Class 2 never appears in the GT.
GT = [[[[0, 0, 1, 1]]], [[[0, 0, 0, 1]]]]            # bg at 5 voxels, class 1 at 3
PREDS = [
    # step 1: everything background -> c0 tp5 fp3 fn0; c1 missed (fn3); c2 empty in both.
    [[[[0, 0, 0, 0]]], [[[0, 0, 0, 0]]]],
    # step 2: c0 tp5 fp1 fn0; c1 tp2 fp0 fn1; c2 empty in both.
    [[[[0, 0, 1, 0]]], [[[0, 0, 0, 1]]]],
    # step 3: c0 tp4 fp1 fn1; c1 tp1 fp1 fn2; c2 tp0 fp1 fn0 (false positive only).
    [[[[0, 1, 1, 0]]], [[[0, 0, 0, 2]]]],
    # step 4: perfect -> c0, c1 Dice 1; c2 empty in both again.
    [[[[0, 0, 1, 1]]], [[[0, 0, 0, 1]]]],
    # step 5: as step 2.
    [[[[0, 0, 1, 0]]], [[[0, 0, 0, 1]]]],
]
# (tp, fp, fn) per class per step, counted by hand from the lists above.
TFN = [
    [(5, 3, 0), (0, 0, 3), (0, 0, 0)],
    [(5, 1, 0), (2, 0, 1), (0, 0, 0)],
    [(4, 1, 1), (1, 1, 2), (0, 1, 0)],
    [(5, 0, 0), (3, 0, 0), (0, 0, 0)],
    [(5, 1, 0), (2, 0, 1), (0, 0, 0)],
]


def _f32(x: float) -> float:
    """Round to float32: the package measures the hard Dice in float32 before using it."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _hard_dice(tfn: list[tuple[int, int, int]]) -> list[float]:
    """(2tp + 1e-8) / (2tp + fp + fn + 1e-8 + 1e-8) per class (reference §7.2 step 1)."""
    return [_f32((2 * tp + EPS) / (2 * tp + fp + fn + EPS + EPS)) for tp, fp, fn in tfn]


def test_diffdw_hand_dice_values() -> None:
    """Sanity of the hand table: empty-in-both -> 0.5, missed -> ~0, 10/13, 4/5."""
    d1 = _hard_dice(TFN[0])
    assert d1[0] == pytest.approx(10 / 13, rel=1e-7)
    assert d1[1] == pytest.approx(1e-8 / 3, rel=1e-6)
    assert d1[2] == 0.5
    assert _hard_dice(TFN[1])[1] == pytest.approx(0.8, rel=1e-7)


def _diffdw_reference_hand(steps: int, k: int, tau: int, alpha: float) -> list[list[float]]:
    """Reference §7.2 recipe in plain floats; returns the weight vector of every step."""
    mu = (tau - 1) / tau
    last = [EPS] * k
    learn = [0.0] * k
    unlearn = [0.0] * k
    dice_w = [1.0] * k
    outs = []
    for s in range(steps):
        lam = _hard_dice(TFN[s])
        for c in range(k):
            delta = lam[c] - last[c]
            term = delta * math.log(lam[c] / last[c])
            lrn = term if delta > 0 else 0.0
            unl = term if delta <= 0 else 0.0
            learn[c] = mu * learn[c] + (1 - mu) * lrn
            unlearn[c] = mu * unlearn[c] + (1 - mu) * unl
            dice_w[c] = mu * dice_w[c] + (1 - mu) * (1 - lam[c])
        last = lam
        d = [((unlearn[c] + EPS) / (learn[c] + EPS)) ** alpha for c in range(k)]
        w = [d[c] * dice_w[c] for c in range(k)]
        m = max(w)
        outs.append([k * v / m for v in w])
    return outs


def _diffdw_paper_hand(steps: int, k: int, tau: int, alpha: float) -> list[list[float]]:
    """Paper variant: sums over the last tau rows of (|ln r|·[Δ>0], |ln r|·[Δ<=0], 1-λ)."""
    last = [EPS] * k
    rows = []
    outs = []
    for s in range(steps):
        lam = _hard_dice(TFN[s])
        lr, ur = [], []
        for c in range(k):
            delta = lam[c] - last[c]
            a = abs(math.log(lam[c] / last[c]))
            lr.append(a if delta > 0 else 0.0)
            ur.append(a if delta <= 0 else 0.0)
        rows.append((lr, ur, [1 - v for v in lam]))
        last = lam
        win = rows[-tau:]
        L = [sum(r[0][c] for r in win) for c in range(k)]
        U = [sum(r[1][c] for r in win) for c in range(k)]
        R = [sum(r[2][c] for r in win) for c in range(k)]
        w = [((U[c] + EPS) / (L[c] + EPS)) ** alpha * R[c] for c in range(k)]
        m = max(w)
        outs.append([v / m for v in w])
    return outs


def _run_diffdw(s: DiffDW, steps: int, start: int = 0) -> list[list[float]]:
    outs = []
    for i in range(start, start + steps):
        out = s.update(logits_l=logits_from_labels(PREDS[i], 3),
                       labels_l=torch.tensor(GT, dtype=torch.long))
        assert out.dtype == torch.float32 and out.shape == (3,)
        outs.append(out.tolist())
    return outs


def test_diffdw_reference_steps_by_hand() -> None:
    """Five reference updates (τ = 4, α = 0.2) against the plain-float recipe."""
    s = DiffDW(3, accumulate_iters=4, alpha=0.2)
    expected = _diffdw_reference_hand(5, 3, 4, 0.2)
    got = _run_diffdw(s, 5)
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, rel=1e-5)
        assert max(g) == pytest.approx(3.0)  # ×K after max-normalisation
    # Step 1 worked out fully by hand (μ = 3/4, 1 - μ = 1/4):
    #   c0: λ = 10/13, Δ > 0 -> learn = (10/13 - 1e-8) ln((10/13)/1e-8) / 4, unlearn 0
    #   c1: λ = 1e-8/3, Δ < 0 -> unlearn = Δ ln(1/3) / 4 (~1.8e-9), learn 0
    #   c2: λ = 0.5,   Δ > 0 -> learn = (0.5 - 1e-8) ln(0.5/1e-8) / 4, unlearn 0
    #   dice_weight = 3/4 + (1 - λ)/4.
    l0 = 10 / 13
    l1 = 1e-8 / 3
    learn = [(l0 - EPS) * math.log(l0 / EPS) / 4, 0.0, (0.5 - EPS) * math.log(0.5 / EPS) / 4]
    unlearn = [0.0, (l1 - EPS) * math.log(l1 / EPS) / 4, 0.0]
    dw = [0.75 + (1 - l0) / 4, 0.75 + (1 - l1) / 4, 0.75 + 0.5 / 4]
    w = [((unlearn[c] + EPS) / (learn[c] + EPS)) ** 0.2 * dw[c] for c in range(3)]
    assert got[0] == pytest.approx([3 * v / max(w) for v in w], rel=1e-5)
    # The missed class (c1) dominates at step 1 (d ~ 1 vs tiny d for c0 and c2).
    assert got[0][1] == pytest.approx(3.0)


def test_diffdw_state_after_steps() -> None:
    """The EMA state tensors themselves (learn/unlearn/dice_weight/last_dice) after 2 steps."""
    s = DiffDW(3, accumulate_iters=4, alpha=0.2)
    _run_diffdw(s, 2)
    lam1, lam2 = _hard_dice(TFN[0]), _hard_dice(TFN[1])
    # dice_weight after two steps: μ²·1 + μ(1-μ)(1-λ1) + (1-μ)(1-λ2).
    dw = [0.5625 + 0.1875 * (1 - lam1[c]) + 0.25 * (1 - lam2[c]) for c in range(3)]
    assert s.dice_weight.tolist() == pytest.approx(dw, rel=1e-7)
    assert s.last_dice.tolist() == pytest.approx(lam2, rel=1e-7)
    # c2 (empty in both at steps 1 and 2): step 2 has Δ = 0 -> unlearn term 0·ln 1 = 0;
    # learn = 3/4 · (step-1 learn).
    l1 = 0.25 * (0.5 - EPS) * math.log(0.5 / EPS)
    assert s.learn[2].item() == pytest.approx(0.75 * l1, rel=1e-6)
    assert s.unlearn[2].item() == 0.0


def test_diffdw_reset_returns_k_ones_and_clears_history() -> None:
    s = DiffDW(3, accumulate_iters=4, alpha=0.2)
    out0 = s.reset(torch.tensor([10, 0, 3]))
    assert out0.dtype == torch.float32 and out0.tolist() == [3.0, 3.0, 3.0]
    _run_diffdw(s, 3)
    out = s.reset(torch.tensor([10, 0, 3]))
    assert out.tolist() == [3.0, 3.0, 3.0]
    assert s.last_dice.tolist() == pytest.approx([EPS] * 3, rel=1e-12)
    assert s.learn.tolist() == [0.0] * 3 and s.unlearn.tolist() == [0.0] * 3
    assert s.dice_weight.tolist() == [1.0] * 3
    # After the reset the run restarts from scratch: same as a fresh instance's first step.
    again = _run_diffdw(s, 1)[0]
    assert again == pytest.approx(_diffdw_reference_hand(1, 3, 4, 0.2)[0], rel=1e-5)


def test_diffdw_paper_variant_window_wraps() -> None:
    """τ = 3 and 5 updates: the last two outputs use a window that has wrapped around."""
    s = DiffDW(3, accumulate_iters=3, alpha=0.2, variant="paper")
    got = _run_diffdw(s, 5)
    expected = _diffdw_paper_hand(5, 3, 3, 0.2)
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, rel=1e-5)
        assert max(g) == pytest.approx(1.0)  # no ×K
    # The wrapped window is not the cumulative sum: a version summing all 5 rows differs.
    assert got[4] != pytest.approx(_diffdw_paper_hand(5, 3, 5, 0.2)[4], rel=1e-3)
    assert int(s.filled) == 5


def test_diffdw_update_requires_labeled_half() -> None:
    with pytest.raises(ValueError):
        DiffDW(3).update(logits_u=torch.zeros(1, 3, 1, 1, 1))


# --------------------------------------------------------------------------------------------
# CReST
# --------------------------------------------------------------------------------------------


def test_crest_weights_tie_rule() -> None:
    w = crest_weights(torch.tensor([10, 1, 1, 5]))
    mu1 = ((1 + EPS) / (10 + EPS)) ** (1 / 3)   # 0.4641...
    mu5 = ((5 + EPS) / (10 + EPS)) ** (1 / 3)   # 0.7937...
    # mu = [1, mu1, mu1, mu5]; descending stable order: 0, 3, 1, 2; the class at rank r gets
    # the mu of rank K-1-r: class 0 <- class 2 (mu1), class 3 <- class 1 (mu1),
    # class 1 <- class 3 (mu5), class 2 <- class 0 (1.0). Tied 1 and 2: higher index larger.
    assert w.tolist() == approx_list([mu1, mu5, 1.0, mu1])
    assert round(mu1, 3) == 0.464 and round(mu5, 4) == 0.7937


def test_crest_weights_distinct_counts_reverse_ranks() -> None:
    w = crest_weights(torch.tensor([1000.0, 1.0, 8.0, 125.0]))
    mu = [((n + EPS) / (1000 + EPS)) ** (1 / 3) for n in (1000.0, 1.0, 8.0, 125.0)]
    # ranks: 0 (1.0), 3 (0.5), 2 (0.2), 1 (0.1) -> 0 gets mu[1], 3 gets mu[2], 2 gets mu[3],
    # 1 gets mu[0].
    assert w.tolist() == approx_list([mu[1], mu[0], mu[3], mu[2]])
    assert w.tolist() == pytest.approx([0.1, 1.0, 0.5, 0.2], rel=1e-6)


def test_crest_reset_and_ema_update() -> None:
    k = 4
    s = CReST(k)
    mu1 = ((1 + EPS) / (10 + EPS)) ** (1 / 3)
    mu5 = ((5 + EPS) / (10 + EPS)) ** (1 / 3)
    w0 = [mu1, mu5, 1.0, mu1]  # no ×K
    assert s.reset(torch.tensor([10, 1, 1, 5])).tolist() == pytest.approx(w0, rel=1e-6)
    # UNL_1 counts 9/1/1/1: mu = [1, m, m, m] with m = (1/9)^(1/3); stable descending order
    # 0, 1, 2, 3 -> class 0 <- class 3 (m), class 1 <- class 2 (m), class 2 <- class 1 (m),
    # class 3 <- class 0 (1).
    m = ((1 + EPS) / (9 + EPS)) ** (1 / 3)
    raw1 = [m, m, m, 1.0]
    w1 = [0.99 * a + 0.01 * b for a, b in zip(w0, raw1, strict=True)]
    out1 = s.update(logits_l=logits_from_labels(UNL_2, k), logits_u=logits_from_labels(UNL_1, k))
    assert out1.dtype == torch.float32
    assert out1.tolist() == pytest.approx(w1, rel=1e-6)
    # UNL_2 counts 6/3/3/0: mu = [1, a, a, e] with a = (1/2)^(1/3), e = (1e-8/6)^(1/3);
    # order 0, 1, 2, 3 -> class 0 <- e, 1 <- a, 2 <- a, 3 <- 1.
    a = ((3 + EPS) / (6 + EPS)) ** (1 / 3)
    e = (EPS / (6 + EPS)) ** (1 / 3)
    w2 = [0.99 * x + 0.01 * y for x, y in zip(w1, [e, a, a, 1.0], strict=True)]
    assert s.update(logits_u=logits_from_labels(UNL_2, k)).tolist() == pytest.approx(w2, rel=1e-6)


# --------------------------------------------------------------------------------------------
# SimiS
# --------------------------------------------------------------------------------------------


def simis_hand(counts: list[float]) -> list[float]:
    tot = sum(counts)
    p = [(n + EPS) / (tot + EPS) for n in counts]
    return [len(counts) * (max(p) - v) for v in p]


def test_simis_weights_formula() -> None:
    w = simis_weights(torch.tensor([6.0, 3.0, 1.0, 0.0]))
    # p ~ [0.6, 0.3, 0.1, 0] -> 4·(0.6 - p) = [0, 1.2, 2.0, 2.4]
    assert w.tolist() == approx_list(simis_hand([6.0, 3.0, 1.0, 0.0]))
    assert w.tolist() == pytest.approx([0.0, 1.2, 2.0, 2.4], abs=1e-7)


def test_simis_reset_and_update_counts_both_halves() -> None:
    k = 4
    s = SimiS(k)
    labeled = [50.0, 30.0, 15.0, 5.0]
    w0 = [0.99 * k + 0.01 * v for v in simis_hand(labeled)]
    assert s.reset(torch.tensor([50, 30, 15, 5])).tolist() == pytest.approx(w0, rel=1e-6)
    # Update: counts = UNL_1 (logits_l) + UNL_2 (logits_u) = 9+6 / 1+3 / 1+3 / 1+0.
    counts = [a + b for a, b in zip(flat_counts(UNL_1, k), flat_counts(UNL_2, k), strict=True)]
    assert counts == [15.0, 4.0, 4.0, 1.0]
    w1 = [0.99 * a + 0.01 * b for a, b in zip(w0, simis_hand(counts), strict=True)]
    out = s.update(logits_l=logits_from_labels(UNL_1, k), labels_l=None,
                   logits_u=logits_from_labels(UNL_2, k))
    assert out.dtype == torch.float32
    assert out.tolist() == pytest.approx(w1, rel=1e-6)
    # Only the unlabeled half: counts of UNL_2 alone.
    w2 = [0.99 * a + 0.01 * b for a, b in zip(w1, simis_hand(flat_counts(UNL_2, k)), strict=True)]
    assert s.update(logits_u=logits_from_labels(UNL_2, k)).tolist() == pytest.approx(w2, rel=1e-6)


# --------------------------------------------------------------------------------------------
# The contract of every registered strategy, in both variants
# --------------------------------------------------------------------------------------------

K4_LABELS = torch.tensor([[[[0, 1, 1], [0, 3, 2]]], [[[0, 0, 0], [0, 1, 3]]]])
COUNTS = torch.tensor([40, 10, 5, 1])
#: Updates before a state is exported: more than DiffDW's default τ = 50, so that its paper
#: variant's window has wrapped.
HISTORY = 53
CONTRACT = [pytest.param(key, variant, id=f"{key}-{variant}")
            for key in WEIGHTINGS for variant in VARIANTS]


def _batch(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"logits_l": torch.randn(2, 4, 1, 2, 3, generator=g),
            "labels_l": K4_LABELS,
            "logits_u": torch.randn(2, 4, 1, 2, 3, generator=g)}


def _strategy(key: str, variant: str, updates: int = 0) -> WeightingStrategy:
    """A registered strategy (K = 4, default arguments), reset on COUNTS, after ``updates``."""
    s = WEIGHTINGS.get(key)(4, variant=variant)
    s.reset(COUNTS)
    for seed in range(updates):
        s.update(**_batch(seed))
    return s


@pytest.mark.parametrize(("key", "variant"), CONTRACT)
def test_state_dict_round_trip(key: str, variant: str) -> None:
    a = _strategy(key, variant, HISTORY)
    state = a.state_dict()
    assert list(state) == list(a.state_names) and "weights" in state
    b = WEIGHTINGS.get(key)(4, variant=variant)
    b.load_state_dict(state)
    for name, val in state.items():
        assert torch.equal(getattr(b, name), val), name
    nxt_a = a.update(**_batch(99))
    nxt_b = b.update(**_batch(99))
    assert torch.equal(nxt_a, nxt_b)
    # The state is a copy: mutating it after export does not touch the strategy.
    state["weights"].fill_(-1.0)
    assert torch.equal(a.current(), nxt_a)
    # A fresh instance that did not load the state differs, unless the weights are fixed by
    # ``reset`` (then the history changes nothing and the weights are the reset ones).
    nxt_c = _strategy(key, variant).update(**_batch(99))
    if WEIGHTINGS.get(key).adaptive:
        assert not torch.equal(nxt_c, nxt_a)
    else:
        assert torch.equal(nxt_c, nxt_a)
        assert torch.equal(nxt_a, WEIGHTINGS.get(key)(4, variant=variant).reset(COUNTS))


@pytest.mark.parametrize(("key", "variant"), CONTRACT)
def test_device_move_keeps_the_state(key: str, variant: str) -> None:
    a = _strategy(key, variant, 5)
    b = _strategy(key, variant, 5)
    dtypes = {name: t.dtype for name, t in b.state_dict().items()}
    assert b.to(torch.device("cpu")) is b
    for name in b.state_names:
        tensor = getattr(b, name)
        assert tensor.device == torch.device("cpu") and tensor.dtype == dtypes[name], name
    assert torch.equal(b.update(**_batch(99)), a.update(**_batch(99)))


@pytest.mark.parametrize(("key", "variant"), CONTRACT)
def test_resume_gives_the_same_updates(key: str, variant: str) -> None:
    """A strategy that loads another's state after k updates gives the same next n."""
    a = _strategy(key, variant, HISTORY)
    resumed = WEIGHTINGS.get(key)(4, variant=variant)
    resumed.load_state_dict(a.state_dict())
    for seed in range(HISTORY, HISTORY + 5):
        assert torch.equal(resumed.update(**_batch(seed)), a.update(**_batch(seed))), seed
    for name, val in a.state_dict().items():
        assert torch.equal(getattr(resumed, name), val), name


@pytest.mark.parametrize("key", list(WEIGHTINGS))
def test_every_registered_weighting_returns_finite_k_float32(key: str) -> None:
    cls = WEIGHTINGS.get(key)
    s = cls(4)
    counts = torch.tensor([40, 10, 5, 0], dtype=torch.int64)
    if cls.requires_every_class:  # e.g. CLD: no epsilon, an absent class is refused, not inf
        with pytest.raises(UserError):
            s.reset(counts)
        counts = torch.tensor([40, 10, 5, 1], dtype=torch.int64)
    w = s.reset(counts)
    assert w.dtype == torch.float32 and w.shape == (4,) and torch.isfinite(w).all()
    for seed in range(3):
        u = s.update(**_batch(seed))
        assert u.dtype == torch.float32 and u.shape == (4,) and torch.isfinite(u).all()
    assert cls.title and issubclass(cls, WeightingStrategy)
    assert len(WEIGHTINGS) >= 5
    assert {"uniform", "distdw", "diffdw", "crest", "simis"} <= set(WEIGHTINGS)


def test_titles_are_the_ablation_table_names() -> None:
    titles = {key: cls.title for key, cls in WEIGHTINGS.items()}
    assert {key: titles[key] for key in ("uniform", "distdw", "diffdw", "crest", "simis", "cld")
            } == {"uniform": "Org", "distdw": "DistDW", "diffdw": "DiffDW", "crest": "CReST",
                  "simis": "SimiS", "cld": "CLD"}
    assert len(set(titles.values())) == len(titles)
    assert METHODS.get("distdw-crest").title == "DistDW-CReST"
    assert METHODS.get("uniform-cld").title == "Org-CLD"
    assert {f"{a}-{b}" for a, b in ablation_pairings()} <= {
        k for k in METHODS} | {a for k in METHODS for a in METHODS.aliases_of(k)}


def test_the_package_imports_every_strategy_module() -> None:
    """Each module of the package but base and functional registers a strategy."""
    package = Path(weighting_package.__file__).parent
    modules = {p.stem for p in package.glob("*.py")} - {"__init__", "base", "functional"}
    registered = {cls.__module__.rsplit(".", 1)[-1] for _, cls in WEIGHTINGS.items()}
    assert modules <= registered


TOY_MODULE = '''
from dhcbench.methods.weighting.base import WeightingStrategy, weighting


@weighting("dropped")
class Dropped(WeightingStrategy):
    title = "Dropped"
'''


def test_a_dropped_in_file_is_imported_and_registered(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The package's import loop picks up a new module with no other change (here from an
    extra folder of the package path, into a throw-away registry)."""
    (tmp_path / "dropped.py").write_text(TOY_MODULE)
    registry: Registry[type[WeightingStrategy]] = Registry("weighting")
    monkeypatch.setattr(weighting_base, "WEIGHTINGS", registry)
    monkeypatch.setattr(weighting_package, "__path__",
                        [*weighting_package.__path__, str(tmp_path)])
    name = f"{weighting_package.__name__}.dropped"
    try:
        assert "dropped" in weighting_package._import_strategies()
        assert list(registry) == ["dropped"] and registry.get("dropped").title == "Dropped"
    finally:
        sys.modules.pop(name, None)
        if hasattr(weighting_package, "dropped"):
            delattr(weighting_package, "dropped")
    assert "dropped" not in WEIGHTINGS


def test_a_decorated_class_joins_the_registry_and_the_pairings(monkeypatch) -> None:  # noqa: ANN001
    registry: Registry[type[WeightingStrategy]] = Registry("weighting")
    monkeypatch.setattr(weighting_base, "WEIGHTINGS", registry)
    registry.add("uniform", Uniform)

    @weighting("toy")
    class Toy(WeightingStrategy):
        title = "Toy"

        def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
            self.weights = labeled_counts.double() + 1.0
            return self.current()

        def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
            self.weights = self.weights + 1.0
            return self.current()

    assert registry.get("toy") is Toy and "toy" not in WEIGHTINGS
    assert ablation_pairings(registry) == [("toy", "toy"), ("toy", "uniform"),
                                           ("uniform", "toy"), ("uniform", "uniform")]
    # The base class carries the state handling: a round trip needs nothing in Toy.
    a = Toy(4)
    a.reset(COUNTS)
    a.update()
    b = Toy(4)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.update(), a.update())
    with pytest.raises(ValueError, match="duplicate"):
        weighting("toy")(Toy)
    with pytest.raises(ValueError, match="needs a title"):
        weighting("untitled")(type("Untitled", (WeightingStrategy,), {}))


def test_invalid_variant_and_num_classes() -> None:
    with pytest.raises(ValueError):
        DistDW(3, variant="nope")
    with pytest.raises(ValueError):
        SimiS(1)


# --------------------------------------------------------------------------------------------
# observe: the co-training step's entry, with the argmax it computed once per branch
# --------------------------------------------------------------------------------------------


COUNTING = ("crest", "diffdw", "distdw", "simis")


@pytest.mark.parametrize("key", sorted(WEIGHTINGS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_observe_with_the_steps_argmax_equals_update(key: str, variant: str) -> None:
    g = torch.Generator().manual_seed(0)
    k = 5
    counts = torch.tensor([400, 30, 20, 10, 5])
    by_update, by_observe = WEIGHTINGS.get(key)(k, variant=variant), WEIGHTINGS.get(key)(
        k, variant=variant)
    by_update.reset(counts)
    by_observe.reset(counts)
    for _ in range(3):
        z = torch.randn(4, k, 3, 4, 5, generator=g)
        y = torch.randint(0, k, (2, 3, 4, 5), generator=g)
        expected = by_update.update(logits_l=z[:2], labels_l=y, logits_u=z[2:])
        pred = z.argmax(1)
        # The strategies that count argmaxes read the given ones only: NaN logits show it.
        shown = torch.full_like(z, float("nan")) if key in COUNTING else z
        got = by_observe.observe(logits_l=shown[:2], labels_l=y, logits_u=shown[2:],
                                 argmax_l=pred[:2], argmax_u=pred[2:])
        assert torch.equal(got, expected)
    for name in by_update.state_names:
        assert torch.equal(getattr(by_update, name), getattr(by_observe, name))


def test_observe_falls_back_to_update_for_a_strategy_that_only_has_update() -> None:
    class OnlyUpdate(WeightingStrategy):
        title = "OnlyUpdate"

        def reset(self, labeled_counts: torch.Tensor) -> torch.Tensor:
            self.weights = torch.ones(self.num_classes, dtype=torch.float64)
            return self.current()

        def update(self, logits_l=None, labels_l=None, logits_u=None) -> torch.Tensor:  # noqa: ANN001
            self.weights = self.weights + logits_u.mean().double()
            return self.current()

    s = OnlyUpdate(3)
    s.reset(torch.ones(3))
    z = torch.ones(2, 3, 2, 2, 2)
    got = s.observe(logits_l=None, labels_l=None, logits_u=z, argmax_l=None,
                    argmax_u=torch.zeros(2, 2, 2, 2, dtype=torch.long))
    assert torch.equal(got, torch.full((3,), 2.0))
