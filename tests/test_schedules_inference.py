"""Unit tests of the per-epoch schedules (reference §5) and sliding-window inference (§10).

Pinned:

- poly LR lagged by one epoch: epochs 0 and 1 at base, epoch e at base·(1 - (e-1)/E)^0.9,
  the last epoch (E) still > 0;
- the Gaussian ramp-up λ = w·exp(-5 (1 - t/T)^2) with the reference's printed values for
  w = 0.1, E = 300 (λ(50) = 0.0031, λ(100) = 0.0108, λ(150) = 0.0287, λ(200) = 0.0574,
  λ(300) = 0.1), reached at epochs t + 1, and w·e^-5 at epoch 0;
- window starts min(stride·i, size - patch), i < ceil((size - patch)/stride) + 1;
- sliding_window_probs: probabilities that sum to 1, the average of the windows' softmax
  where windows overlap (hand-computed with math.exp on a 1D-like volume), and padding +
  cropping of a volume smaller than the patch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dhcbench.evaluation.inference import (
    default_stride,
    sliding_window_predict,
    sliding_window_probs,
    window_starts,
)
from dhcbench.schedules import poly_lr, schedule_time, sigmoid_rampup, unsup_weight

CPU = torch.device("cpu")


# --------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------


def test_schedule_time_lag() -> None:
    assert [schedule_time(e) for e in range(4)] == [0, 0, 1, 2]


def test_poly_lr() -> None:
    base, e_max = 0.03, 300
    assert poly_lr(base, 0, e_max) == base
    assert poly_lr(base, 1, e_max) == base
    for e in (2, 50, 151, 299, 300):
        assert poly_lr(base, e, e_max) == pytest.approx(base * (1 - (e - 1) / e_max) ** 0.9,
                                                        rel=1e-12)
    # Epoch 101: base · (1 - 100/300)^0.9 = 0.03 · (2/3)^0.9.
    assert poly_lr(base, 101, e_max) == pytest.approx(0.03 * (2 / 3) ** 0.9, rel=1e-12)
    # The loop runs E + 1 epochs; the last one (epoch E) runs at poly(E - 1) > 0.
    assert poly_lr(base, e_max, e_max) == pytest.approx(base * (1 / 300) ** 0.9, rel=1e-12)
    assert poly_lr(base, e_max, e_max) > 0


@pytest.mark.parametrize("t, printed", [(50, 0.0031), (100, 0.0108), (150, 0.0287),
                                        (200, 0.0574), (300, 0.1)])
def test_unsup_weight_reference_values(t: int, printed: float) -> None:
    w, e_max = 0.1, 300
    got = unsup_weight(w, t + 1, e_max)  # t is the epoch just finished -> epoch t + 1
    assert got == pytest.approx(w * math.exp(-5 * (1 - t / e_max) ** 2), rel=1e-12)
    assert round(got, 4) == printed


def test_unsup_weight_epoch_zero_and_no_rampup() -> None:
    assert unsup_weight(0.1, 0, 300) == pytest.approx(0.1 * math.exp(-5), rel=1e-12)
    assert unsup_weight(0.1, 1, 300) == pytest.approx(0.1 * math.exp(-5), rel=1e-12)
    assert unsup_weight(0.1, 0, 300, rampup=False) == 0.1
    # T = None -> sigmoid_rampup with length 0 -> 1 (weight at full strength).
    assert unsup_weight(0.1, 0, None) == 0.1
    # Beyond T the ramp stays at 1.
    assert sigmoid_rampup(500.0, 300.0) == 1.0


# --------------------------------------------------------------------------------------------
# sliding window
# --------------------------------------------------------------------------------------------


def test_window_starts() -> None:
    assert window_starts(80, 64, 16) == [0, 16]
    assert window_starts(160, 128, 32) == [0, 32]
    assert window_starts(64, 64, 16) == [0]
    # ceil((100 - 64)/16) + 1 = 4 windows, the last one clamped to 100 - 64 = 36.
    assert window_starts(100, 64, 16) == [0, 16, 32, 36]
    assert default_stride((64, 128, 128)) == (16, 32, 32)


def _start_dependent_predict(x: torch.Tensor) -> torch.Tensor:
    """Fake 2-class model: logit_1 = the window's first image value (= its start offset),
    logit_0 = 0, constant over the window. Input (N, 1, 1, 1, 4) -> (N, 2, 1, 1, 4)."""
    start = x[:, 0, 0, 0, 0].reshape(-1, 1, 1, 1)
    z1 = start.expand(-1, *x.shape[2:])
    return torch.stack([torch.zeros_like(z1), z1], dim=1)


@pytest.mark.parametrize("window_batch", [1, 4])
def test_sliding_window_overlap_average(window_batch: int) -> None:
    # Volume (D, H, W) = (1, 1, 6) with image value = W index; patch (1, 1, 4), stride 2:
    # windows start at 0 and 2 -> W 0..3 and 2..5, overlapping at W = 2, 3.
    image = np.arange(6, dtype=np.float32).reshape(1, 1, 6)
    probs = sliding_window_probs(_start_dependent_predict, image, (1, 1, 4), (1, 1, 2), 2, CPU,
                                 window_batch=window_batch)
    assert probs.shape == (2, 1, 1, 6)
    # Window at 0: softmax(0, 0) -> p1 = 0.5. Window at 2: softmax(0, 2) -> p1 = e²/(1 + e²).
    p_a = 0.5
    p_b = math.exp(2) / (1 + math.exp(2))
    expected_p1 = [p_a, p_a, (p_a + p_b) / 2, (p_a + p_b) / 2, p_b, p_b]
    assert probs[1, 0, 0].tolist() == pytest.approx(expected_p1, rel=1e-6)
    assert probs[0, 0, 0].tolist() == pytest.approx([1 - v for v in expected_p1], rel=1e-6)
    assert torch.allclose(probs.sum(0), torch.ones(1, 1, 6))
    # The label map: p1 > 0.5 only where the second window contributes.
    labels = sliding_window_predict(_start_dependent_predict, image, (1, 1, 4), (1, 1, 2), 2,
                                    CPU)
    assert labels.dtype == np.uint8
    assert labels[0, 0].tolist() == [0, 0, 1, 1, 1, 1]


def test_sliding_window_two_axes_overlap_counts() -> None:
    """3 classes, windows overlapping on two axes: (1, 3, 3) volume, patch (1, 2, 2),
    stride 1 -> 4 windows. Logits (0, s_h, s_w) with (s_h, s_w) the window start.

    Voxel (h, w) is covered by the windows with s_h in {h-1, h} ∩ {0, 1} and likewise for w;
    the expected value is the mean of softmax(0, s_h, s_w) over those windows."""
    image = np.zeros((1, 3, 3), np.float32)
    image[0] = np.arange(3)[:, None] * 10 + np.arange(3)[None, :]  # value = 10 h + w

    def predict(x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0, 0, 0, 0]  # 10 s_h + s_w at the window's corner
        sh, sw = torch.div(v, 10, rounding_mode="floor"), v % 10
        z = torch.stack([torch.zeros_like(v), sh, sw], 1)
        return z[:, :, None, None, None].expand(-1, -1, *x.shape[2:])

    probs = sliding_window_probs(predict, image, (1, 2, 2), (1, 1, 1), 3, CPU)

    def sm(a: float, b: float) -> list[float]:
        s = 1 + math.exp(a) + math.exp(b)
        return [1 / s, math.exp(a) / s, math.exp(b) / s]

    for h in range(3):
        for w in range(3):
            wins = [(sh, sw) for sh in (0, 1) for sw in (0, 1)
                    if sh <= h <= sh + 1 and sw <= w <= sw + 1]
            exp = [sum(sm(sh, sw)[k] for sh, sw in wins) / len(wins) for k in range(3)]
            assert probs[:, 0, h, w].tolist() == pytest.approx(exp, rel=1e-6), (h, w)
    assert torch.allclose(probs.sum(0), torch.ones(1, 3, 3))


def test_sliding_window_pads_small_volume_and_crops_back() -> None:
    # (2, 3, 5) volume, patch (4, 4, 4): pads 2 / 1 / 0, symmetric ((1, 1), (0, 1), (0, 0)).
    # The fake model's logit_1 is the voxel value (padding is 0), logit_0 is 0, so after
    # the crop every voxel must be exactly sigmoid(own value): any misalignment would show
    # a padded voxel's 0.5 or a neighbour's value.
    rng = np.random.default_rng(0)
    image = rng.uniform(1.0, 3.0, size=(2, 3, 5)).astype(np.float32)

    def predict(x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2:] == (4, 4, 4)
        return torch.cat([torch.zeros_like(x), x], dim=1)

    probs = sliding_window_probs(predict, image, (4, 4, 4), (2, 2, 2), 2, CPU)
    assert probs.shape == (2, 2, 3, 5)
    expected = 1 / (1 + np.exp(-image.astype(np.float64)))
    np.testing.assert_allclose(probs[1].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(0).numpy(), np.ones((2, 3, 5)), rtol=1e-6)
    # A channel axis is accepted as well: (C, D, H, W).
    probs_c = sliding_window_probs(predict, image[None], (4, 4, 4), (2, 2, 2), 2, CPU)
    assert torch.equal(probs_c, probs)
