"""Unit tests of the loss primitives (dhcbench.methods.losses), reference §6.

Every expected number is computed in the test with ``math.exp`` / ``math.log`` on a tiny
hand-written tensor (two voxels, three classes), following the formulas of reference §6:

- weighted CE = ``sum_i w[y_i] ce_i / sum_i w[y_i]`` (torch's ``weight=`` mean), invariant to a
  global scaling of ``w``; 0 (not NaN) when every target voxel has weight 0;
- masked CE = mean over ALL voxels of ``w[y_i] · mask_i · ce_i`` (not divided by the mask sum);
- soft Dice per class ``(2tp + s) / (2tp + fp + fn + s + 1e-8)`` pooled over batch and space;
- negative Dice = ``-mean_{k>=1}(w_k DSC_k)`` (background dropped by default), smooth 1;
- CE + Dice = weighted CE + negative Dice (factor 1 each, summed);
- hard Dice per class with smooth 1e-8: 0.5 for a class empty in both, ~0 for a missed class.

The step's fast paths are checked against these primitives: ``class_argmax`` against
``torch.max`` (ties, NaN), ``class_histogram`` against ``bincount``, and the fused
``softmax_losses`` against the weighted CE and negative Dice (values and gradients).
"""

from __future__ import annotations

import math

import pytest
import torch

from dhcbench.methods.fused_losses import (
    Term,
    composed_term,
    loss_terms,
    softmax_losses,
    weighted_sum,
)
from dhcbench.methods.losses import (
    ce_plus_dice,
    class_argmax,
    class_histogram,
    hard_dice_of_labels,
    hard_dice_per_class,
    masked_ce,
    negative_dice,
    one_hot,
    soft_dice_per_class,
    weighted_ce,
)

# (B=1, K=3, D=1, H=1, W=2): voxel 0 logits (1.0, 2.0, 0.5), voxel 1 logits (0.2, -1.0, 1.5).
Z = [[1.0, 2.0, 0.5], [0.2, -1.0, 1.5]]
Y = [0, 2]
LOGITS = torch.tensor([[[[[Z[0][k], Z[1][k]]]] for k in range(3)]])
TARGET = torch.tensor([[[Y]]])
W = [0.5, 1.0, 2.0]


def _ce(z: list[float], y: int) -> float:
    """-log softmax(z)[y] by hand."""
    return math.log(sum(math.exp(v) for v in z)) - z[y]


def _softmax(z: list[float]) -> list[float]:
    s = sum(math.exp(v) for v in z)
    return [math.exp(v) / s for v in z]


def _soft_dice_hand(smooth: float = 1.0) -> list[float]:
    """Soft Dice per class of softmax(LOGITS) against TARGET, by hand."""
    p = [_softmax(z) for z in Z]
    out = []
    for k in range(3):
        tp = sum(p[i][k] for i in range(2) if Y[i] == k)
        fp = sum(p[i][k] for i in range(2) if Y[i] != k)
        fn = sum(1 - p[i][k] for i in range(2) if Y[i] == k)
        out.append((2 * tp + smooth) / (2 * tp + fp + fn + smooth + 1e-8))
    return out


def test_tensor_layout() -> None:
    assert LOGITS.shape == (1, 3, 1, 1, 2) and TARGET.shape == (1, 1, 1, 2)
    assert LOGITS[0, :, 0, 0, 1].tolist() == pytest.approx(Z[1])


def test_weighted_ce_is_weighted_mean() -> None:
    ce0, ce1 = _ce(Z[0], 0), _ce(Z[1], 2)
    expected = (W[0] * ce0 + W[2] * ce1) / (W[0] + W[2])
    got = weighted_ce(LOGITS, TARGET, torch.tensor(W))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # The plain mean would be different: the weighting matters.
    assert expected != pytest.approx((ce0 + ce1) / 2, rel=1e-3)
    # No weight -> plain mean.
    assert weighted_ce(LOGITS, TARGET).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)


def test_weighted_ce_invariant_to_global_weight_scale() -> None:
    base = weighted_ce(LOGITS, TARGET, torch.tensor(W))
    scaled = weighted_ce(LOGITS, TARGET, 14.0 * torch.tensor(W))
    assert scaled.item() == pytest.approx(base.item(), rel=1e-6)


def test_weighted_ce_all_zero_weight_targets_give_zero() -> None:
    target = torch.tensor([[[[0, 0]]]])  # both voxels background, background weight 0
    got = weighted_ce(LOGITS, target, torch.tensor([0.0, 3.0, 14.0]))
    assert not torch.isnan(got)
    assert got.item() == 0.0


def test_masked_ce_mean_over_all_voxels() -> None:
    ce0, ce1 = _ce(Z[0], 0), _ce(Z[1], 2)
    mask = torch.tensor([[[[1.0, 0.0]]]])
    # Mask keeps voxel 0 only; the mean divides by the 2 voxels, not by the mask sum 1.
    assert masked_ce(LOGITS, TARGET, mask).item() == pytest.approx(ce0 / 2, rel=1e-6)
    got = masked_ce(LOGITS, TARGET, mask, torch.tensor(W))
    assert got.item() == pytest.approx(W[0] * ce0 / 2, rel=1e-6)
    # Bool mask, weights only, neither.
    bool_mask = torch.tensor([[[[False, True]]]])
    assert masked_ce(LOGITS, TARGET, bool_mask, torch.tensor(W)).item() == pytest.approx(
        W[2] * ce1 / 2, rel=1e-6)
    assert masked_ce(LOGITS, TARGET, weight=torch.tensor(W)).item() == pytest.approx(
        (W[0] * ce0 + W[2] * ce1) / 2, rel=1e-6)
    assert masked_ce(LOGITS, TARGET).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)


def test_soft_dice_per_class_pooled_over_batch() -> None:
    # (B=2, K=2, 1, 1, 1): sample 0 probs (0.8, 0.2) label 0; sample 1 probs (0.3, 0.7) label 1.
    probs = torch.tensor([[0.8, 0.2], [0.3, 0.7]]).reshape(2, 2, 1, 1, 1)
    onehot = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 2, 1, 1, 1)
    # class 0: tp 0.8, fp 0.3, fn 0.2; class 1: tp 0.7, fp 0.2, fn 0.3.
    for s in (1.0, 0.0, 1e-8):
        exp0 = (1.6 + s) / (1.6 + 0.3 + 0.2 + s + 1e-8)
        exp1 = (1.4 + s) / (1.4 + 0.2 + 0.3 + s + 1e-8)
        got = soft_dice_per_class(probs, onehot, smooth=s)
        assert got.tolist() == pytest.approx([exp0, exp1], rel=1e-6)
    # Default smooth is 1: (2.6 / 3.1, 2.4 / 2.9).
    assert soft_dice_per_class(probs, onehot).tolist() == pytest.approx(
        [2.6 / 3.1, 2.4 / 2.9], rel=1e-6)


def test_one_hot_layout() -> None:
    oh = one_hot(TARGET, 3)
    assert oh.shape == (1, 3, 1, 1, 2) and oh.dtype == torch.float32
    assert oh[0, :, 0, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert oh[0, :, 0, 0, 1].tolist() == [0.0, 0.0, 1.0]


def test_negative_dice_foreground_only_weighted() -> None:
    d = _soft_dice_hand(1.0)
    got = negative_dice(LOGITS, TARGET, torch.tensor(W))
    assert got.item() == pytest.approx(-(W[1] * d[1] + W[2] * d[2]) / 2, rel=1e-6)
    # Unweighted, foreground only.
    assert negative_dice(LOGITS, TARGET).item() == pytest.approx(-(d[1] + d[2]) / 2, rel=1e-6)
    # Background weight does not matter when the background is dropped.
    w_bg = torch.tensor([100.0, W[1], W[2]])
    assert negative_dice(LOGITS, TARGET, w_bg).item() == pytest.approx(got.item(), rel=1e-6)
    # With the background included, all three classes, each with its own weight.
    inc = negative_dice(LOGITS, TARGET, torch.tensor(W), include_background=True)
    assert inc.item() == pytest.approx(-(W[0] * d[0] + W[1] * d[1] + W[2] * d[2]) / 3, rel=1e-6)
    # ×K scaling of the weights scales the Dice term ×K (it does not cancel, unlike CE).
    assert negative_dice(LOGITS, TARGET, 3 * torch.tensor(W)).item() == pytest.approx(
        3 * got.item(), rel=1e-6)


def test_ce_plus_dice_is_sum_of_terms() -> None:
    ce0, ce1 = _ce(Z[0], 0), _ce(Z[1], 2)
    d = _soft_dice_hand(1.0)
    expected = (W[0] * ce0 + W[2] * ce1) / (W[0] + W[2]) - (W[1] * d[1] + W[2] * d[2]) / 2
    assert ce_plus_dice(LOGITS, TARGET, torch.tensor(W)).item() == pytest.approx(expected,
                                                                                 rel=1e-6)
    unweighted = (ce0 + ce1) / 2 - (d[1] + d[2]) / 2
    assert ce_plus_dice(LOGITS, TARGET).item() == pytest.approx(unweighted, rel=1e-6)


def test_hard_dice_per_class_hand_case() -> None:
    # K = 4, 5 voxels: pred (argmax) 0 1 1 0 0 ; GT 0 1 0 3 0.
    pred = [0, 1, 1, 0, 0]
    gt = [0, 1, 0, 3, 0]
    logits = one_hot(torch.tensor([[[pred]]]), 4) * 5.0
    got = hard_dice_per_class(logits, torch.tensor([[[gt]]]))
    # class 0: tp 2 (voxels 0, 4), fp 1 (voxel 3), fn 1 (voxel 2) -> 4/6
    # class 1: tp 1, fp 1, fn 0 -> 2/3; class 2: empty in both -> 1e-8/2e-8 = 0.5;
    # class 3: missed (fn 1) -> 1e-8 / (1 + 2e-8) ~ 1e-8.
    assert got.tolist() == pytest.approx([4 / 6, 2 / 3, 0.5, 1e-8], rel=1e-6)
    assert got[2].item() == 0.5
    assert got[3].item() < 1e-7


def test_hard_dice_per_class_equals_one_hot_computation() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, 4, 5, generator=g)
    target = torch.randint(0, 5, (2, 3, 4, 5), generator=g)
    target[target == 4] = 0  # class 4 never in GT (may still be predicted)
    pred_oh = torch.nn.functional.one_hot(logits.argmax(1), 5).double()
    gt_oh = torch.nn.functional.one_hot(target, 5).double()
    axes = (0, 1, 2, 3)
    tp = (pred_oh * gt_oh).sum(axes)
    fp = (pred_oh * (1 - gt_oh)).sum(axes)
    fn = ((1 - pred_oh) * gt_oh).sum(axes)
    expected = (2 * tp + 1e-8) / (2 * tp + fp + fn + 1e-8 + 1e-8)
    got = hard_dice_per_class(logits, target)
    assert got.shape == (5,)
    assert got.tolist() == pytest.approx(expected.tolist(), rel=1e-6)


# -- the step's fast paths: argmax, histograms, the fused softmax losses ----------------------


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_class_argmax_equals_torch_max_with_ties_and_nan(dim: int) -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (3, 5, 4, 6), generator=g).float()  # many ties
    assert torch.equal(class_argmax(scores, dim), torch.max(scores, dim).indices)
    scores[1, 2, 3, 4] = float("nan")
    scores[0, 0, 0, 0] = float("-inf")
    assert torch.equal(class_argmax(scores, dim), torch.max(scores, dim).indices)
    wide = torch.randn(2, 300, 3, generator=g)  # more classes than uint8 indices
    assert torch.equal(class_argmax(wide, 1), torch.max(wide, 1).indices)
    last = torch.randn(2, 3, 5, 7, 4, generator=g).contiguous(
        memory_format=torch.channels_last_3d)
    assert torch.equal(class_argmax(last), torch.max(last, 1).indices)


def test_class_histogram_counts_and_sums_like_bincount() -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 6, (2, 3, 4, 5), generator=g)
    labels[labels == 4] = 0  # an empty class
    weights = torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64)
    counts = class_histogram(labels, 7)
    assert counts.dtype == torch.int64
    assert torch.equal(counts, torch.bincount(labels.reshape(-1), minlength=7))
    sums = class_histogram(labels, 7, weights)
    expected = torch.bincount(labels.reshape(-1), weights.reshape(-1), minlength=7)
    assert sums.dtype == torch.float64
    assert torch.allclose(sums, expected, rtol=1e-12, atol=0)


def test_hard_dice_of_labels_is_hard_dice_per_class_of_the_argmax() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 5, 3, 4, 5, generator=g)
    target = torch.randint(0, 5, (2, 3, 4, 5), generator=g)
    got = hard_dice_of_labels(logits.argmax(1), target, 5)
    assert torch.equal(got, hard_dice_per_class(logits, target))


def _terms(k: int, b: int, g: torch.Generator) -> tuple[Term, ...]:
    """Every kind of term: weighted and not, labeled half, all samples, a later start."""
    y = torch.randint(0, k, (2, 3, 4, 5), generator=g)
    t = torch.randint(0, k, (b, 3, 4, 5), generator=g)
    w = torch.rand(k, generator=g) * k
    return (Term("ce", y, w), Term("dice", y, w), Term("ce", t, w), Term("dice", t, None),
            Term("ce", t[1:], None, start=1), Term("dice", y[1:], w, start=1, smooth=1e-8))


@pytest.mark.parametrize("k", [3, 14])
def test_softmax_losses_equal_the_primitives_with_their_gradients(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    logits = (3.0 * torch.randn(4, k, 3, 4, 5, generator=g)).requires_grad_()
    terms = _terms(k, 4, g)
    factors = torch.rand(len(terms), generator=g) + 0.1
    fused = softmax_losses(logits, terms)
    (grad_fused,) = torch.autograd.grad((factors * fused).sum(), logits)
    reference = torch.stack([composed_term(logits, t) for t in terms])
    (grad_ref,) = torch.autograd.grad((factors * reference).sum(), logits)
    assert torch.allclose(fused, reference, rtol=1e-6, atol=0)  # float32 rounding
    assert torch.allclose(grad_fused, grad_ref, rtol=1e-4, atol=1e-7 * grad_ref.abs().max())


def test_softmax_losses_ce_does_not_underflow() -> None:
    """Log-probabilities far below float32's range of exp: finite, as log_softmax gives."""
    logits = torch.tensor([[0.0, 200.0, -150.0], [300.0, 0.0, 1.0]]).T.reshape(1, 3, 1, 1, 2)
    target = torch.tensor([[[[2, 1]]]])
    values = softmax_losses(logits, (Term("ce", target),))
    expected = composed_term(logits, Term("ce", target))
    assert values[0].item() == pytest.approx(expected.item(), rel=1e-6)
    assert values[0].item() == pytest.approx((350.0 + 300.0) / 2, rel=1e-6)


def test_softmax_losses_zero_weights_and_dtypes() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.zeros(2, 2, 2, 2, dtype=torch.long)  # background only ...
    w = torch.tensor([0.0, 1.0, 2.0])  # ... which weighs 0 (DistDW): the CE term is 0
    values = softmax_losses(logits, (Term("ce", target, w), Term("dice", target, w)))
    assert values.dtype == torch.float32 and values[0].item() == 0.0
    values.sum().backward()
    assert logits.grad is not None and logits.grad.dtype == torch.float64
    assert torch.isfinite(logits.grad).all()
    expected = composed_term(logits, Term("dice", target, w))
    assert values[1].item() == pytest.approx(expected.item(), rel=1e-6)


def test_loss_terms_spell_each_configured_loss() -> None:
    y = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    spelled = {name: [(f, t.kind, t.smooth) for f, t in loss_terms(name, y, None)]
               for name in ("w_ce+dice", "wce", "(ce+dice)/2", "ce+dice")}
    assert spelled == {"w_ce+dice": [(1.0, "ce", 1.0), (1.0, "dice", 1.0)],
                       "wce": [(1.0, "ce", 1.0)],
                       "(ce+dice)/2": [(0.5, "ce", 1.0), (0.5, "dice", 1e-8)],
                       "ce+dice": [(0.5, "ce", 1.0), (0.5, "dice", 1.0)]}
    a, b = torch.tensor(0.3), torch.tensor(-0.7)
    assert torch.equal(weighted_sum([(0.5, a), (0.5, b)]), 0.5 * (a + b))


def _scratch_gradient(seed: int, target: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 3, 2, 2, 2, generator=g).requires_grad_()
    (grad,) = torch.autograd.grad(softmax_losses(logits, (Term("ce", target),)).sum(), logits)
    return grad


def test_softmax_losses_reuse_memory_only_when_nothing_holds_it() -> None:
    """The CPU buffer of one step serves the next, never one whose gradient is still held."""
    target = torch.randint(0, 3, (4, 2, 2, 2), generator=torch.Generator().manual_seed(0))
    first = _scratch_gradient(0, target)
    address = first.data_ptr()
    del first
    again = _scratch_gradient(1, target)
    assert again.data_ptr() == address  # released: reused, no fresh pages
    kept = again.clone()
    part = again.view(-1)[:4]  # a view alone keeps the memory too
    assert _scratch_gradient(2, target).data_ptr() != address
    del again
    assert _scratch_gradient(3, target).data_ptr() != address
    assert torch.equal(part, kept.view(-1)[:4])
    del part
    assert _scratch_gradient(4, target).data_ptr() == address
    # Two graphs alive at once (the two branches of a step) get two buffers.
    a, b = (torch.randn(4, 3, 2, 2, 2).requires_grad_() for _ in range(2))
    (softmax_losses(a, (Term("ce", target),)).sum()
     + softmax_losses(b, (Term("ce", target),)).sum()).backward()
    assert a.grad is not None and b.grad is not None and a.grad.data_ptr() != b.grad.data_ptr()
