"""Hand-computed vectors for the pseudo-labeling and weighting rules of the baselines:
CLD weights and sampling, DePL debiasing, Adsh thresholds, Basak et al. sampling rates and
the UA-MT uncertainty threshold/mask (reference §8.2, §8.6, §8.7, §8.10, §8.11)."""

from __future__ import annotations

import math

import pytest
import torch

from dhcbench.methods.base import SetupContext
from dhcbench.methods.cotraining import unsupervised_loss
from dhcbench.methods.pseudo import (
    CLD,
    Adsh,
    ClassSampling,
    DePL,
    PseudoInput,
    PseudoLabeler,
    cld_weights,
    predictive_entropy,
    uamt_threshold,
)
from dhcbench.methods.weighting import CLDWeights


def cross_loss(labeler: PseudoLabeler, logits: dict, n_l: int, labels: torch.Tensor,
               weights: dict) -> torch.Tensor:
    """The labeler's targets for both branches, learned as the co-training step does."""
    targets = labeler.targets(PseudoInput(logits, n_l, labels, weights))
    return sum(unsupervised_loss("wce", z, targets[k]) for k, z in logits.items())


def test_cld_weights_are_cube_roots_of_the_count_ratio() -> None:
    counts = torch.tensor([1000, 125, 8, 1])
    assert torch.allclose(cld_weights(counts), torch.tensor([1.0, 2.0, 5.0, 10.0],
                                                            dtype=torch.float64))
    w = CLDWeights(4)
    assert torch.allclose(w.reset(counts), torch.tensor([1.0, 2.0, 5.0, 10.0]))
    assert torch.equal(w.update(), w.current())  # fixed for the whole run


def test_cld_sampling_rate_and_confidence_bank() -> None:
    torch.manual_seed(0)
    cld = CLD(4, update_iters=1)
    cld.conf = {"a": torch.tensor([0.2, 0.6, 0.9, 0.5]), "b": torch.tensor([0.2, 0.6, 0.9, 0.5])}
    expected = [math.sqrt(g / 0.8) for g in (0.8, 0.4, 0.1, 0.5)]
    assert torch.allclose(cld.sampling_rate("a"), torch.tensor(expected))
    # One labeled voxel per class; the true-class probabilities become the confidences
    # (the first refresh replaces the initial values).
    logits_l = torch.zeros(1, 4, 1, 1, 4)
    labels = torch.tensor([[[[0, 1, 2, 3]]]])
    for c, v in enumerate((2.0, 1.0, 0.0, -1.0)):
        logits_l[0, c, 0, 0, c] = v
    true = [math.exp(v) / (math.exp(v) + 3) for v in (2.0, 1.0, 0.0, -1.0)]
    z = torch.cat([logits_l, torch.zeros(1, 4, 1, 1, 4)])
    cross_loss(cld, {"a": z, "b": z.clone()}, 1, labels,
               {"a": torch.ones(4), "b": torch.ones(4)})
    assert torch.allclose(cld.conf["a"], torch.tensor(true), atol=1e-6)
    # The second refresh is an EMA (0.999) towards the new mean.
    logits_l2 = torch.zeros(1, 4, 1, 1, 4)
    z2 = torch.cat([logits_l2, torch.zeros(1, 4, 1, 1, 4)])
    cross_loss(cld, {"a": z2, "b": z2.clone()}, 1, labels,
               {"a": torch.ones(4), "b": torch.ones(4)})
    ema = [0.999 * t + 0.001 * 0.25 for t in true]
    assert torch.allclose(cld.conf["a"], torch.tensor(ema), atol=1e-6)


def test_depl_debiases_with_the_prior_then_updates_it() -> None:
    depl = DePL(2)
    # one labeled and one unlabeled sample, one voxel each
    z_a = torch.tensor([[2.0, 0.0], [0.0, 3.0]]).reshape(2, 2, 1, 1, 1)
    z_b = torch.tensor([[0.0, 0.0], [4.0, 0.0]]).reshape(2, 2, 1, 1, 1)
    depl.prior = {"a": torch.tensor([0.8, 0.2]).reshape(1, 2, 1, 1, 1),
                  "b": torch.tensor([0.5, 0.5]).reshape(1, 2, 1, 1, 1)}
    loss = cross_loss(depl, {"a": z_a, "b": z_b}, 1, torch.zeros(1, 1, 1, 1, dtype=torch.long),
                      {})
    # A's debiased probabilities: softmax(z - ln q): voxel 0 -> 1/(1+e^-(2 - ln .8 + ln .2))
    p0 = 1 / (1 + math.exp(-(2 - math.log(0.8) + math.log(0.2))))
    assert p0 < 0.9  # not confident: masked out of B's loss
    p1 = 1 / (1 + math.exp(-(3 + math.log(0.8) - math.log(0.2))))
    assert p1 > 0.9  # voxel 1: class 1, kept
    # B's: voxel 0 ties (0.5) -> masked; voxel 1 class 0 with p = 1/(1+e^-4) > 0.9 -> kept.
    # loss = CE(z_a[voxel1], target 0) / 2 voxels + CE(z_b[voxel1], target 1) / 2 voxels
    ce_a = -math.log(math.exp(0.0) / (math.exp(0.0) + math.exp(3.0)))
    ce_b = -math.log(math.exp(0.0) / (math.exp(4.0) + math.exp(0.0)))
    assert float(loss) == pytest.approx(ce_a / 2 + ce_b / 2, rel=1e-5)
    # prior update from the unlabeled sample: q <- .99 q + .01 softmax(z_u)
    soft = [math.exp(0) / (math.exp(0) + math.exp(3)), math.exp(3) / (math.exp(0) + math.exp(3))]
    expected = [0.99 * 0.8 + 0.01 * soft[0], 0.99 * 0.2 + 0.01 * soft[1]]
    assert torch.allclose(depl.prior["a"].flatten(), torch.tensor(expected), atol=1e-6)


def test_adsh_thresholds_follow_the_rank_rule() -> None:
    adsh = Adsh(3, bins=1000)
    adsh.setup(torch.ones(3), SetupContext(num_unlabeled=8))  # refresh every (8//4)//2 = 1
    # 10 unlabeled voxels; class probabilities chosen by hand (rows sum to 1).
    probs = torch.tensor([
        [0.95, 0.03, 0.02], [0.92, 0.05, 0.03], [0.80, 0.15, 0.05], [0.70, 0.20, 0.10],
        [0.60, 0.30, 0.10], [0.10, 0.85, 0.05], [0.20, 0.70, 0.10], [0.30, 0.60, 0.10],
        [0.10, 0.15, 0.75], [0.25, 0.30, 0.45],
    ])
    z_u = torch.log(probs).T.reshape(1, 3, 1, 1, 10)
    z = torch.cat([torch.zeros(1, 3, 1, 1, 10), z_u])
    cross_loss(adsh, {"a": z, "b": z.clone()}, 1, torch.zeros(1, 1, 1, 10, dtype=torch.long),
               {})
    # majority class 0 (5 voxels predicted), 2 of them above 0.9: rho = 0.4
    # N = (5, 3, 2); ranks int(0.4 N) = (2, 1, 0) among all 10 voxels in descending order
    col = probs.T
    expected = [sorted(col[c].tolist(), reverse=True)[r] for c, r in enumerate((2, 1, 0))]
    assert expected == pytest.approx([0.80, 0.70, 0.75])
    assert torch.allclose(adsh.thresholds["a"], torch.tensor(expected), atol=1e-3)


def test_adsh_mask_multiplies_the_learners_logits() -> None:
    adsh = Adsh(2)
    adsh.setup(torch.ones(2), SetupContext(num_unlabeled=1000))  # no refresh in this test
    adsh.thresholds = {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([0.9, 0.9])}
    z_a = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1, 1)
    z_b = torch.tensor([3.0, 0.0]).reshape(1, 2, 1, 1, 1)  # p = (0.9526, 0.0474)
    loss = cross_loss(adsh, {"a": z_a, "b": z_b}, 0, torch.zeros(0, 1, 1, 1, dtype=torch.long),
                      {})
    # A learns B's argmax (0) with logits × B's mask (1, 0) -> CE([1, 0], 0);
    # B learns A's argmax (1) with logits × A's mask (1, 1) -> CE([3, 0], 1).
    ce_a = -math.log(math.exp(1) / (math.exp(1) + 1))
    ce_b = -math.log(1 / (math.exp(3) + 1))
    assert float(loss) == pytest.approx(ce_a + ce_b, rel=1e-5)


def test_basak_sampling_rates_by_hand() -> None:
    torch.manual_seed(0)
    m = ClassSampling(3)
    m.top_m = 2
    m.sums = torch.tensor([[-1.0, -2.0, -3.0], [0.9, 0.5, 0.1], [0.05, 0.3, 0.6]]) * 2
    m.iters = torch.tensor(2.0)
    m._update_sampling()
    rows = [[-1.0, -2.0, -3.0], [0.9, 0.5, 0.1], [0.05, 0.3, 0.6]]
    r = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in rows]
    g = [[1 - math.exp(-math.exp(-2 * v)) for v in row] for row in r]
    for i in range(3):  # keep the 2 smallest G per indicator, penalise the other
        largest = max(range(3), key=lambda j, i=i: g[i][j])
        g[i][largest] = 0.632
        r[i][largest] = 0.0
    cfs = [1 - sum(r[i][c] for i in range(3)) / 3 for c in range(3)]
    fr = [sum(g[i][c] for i in range(3)) for c in range(3)]
    cur = [a * b for a, b in zip(cfs, fr, strict=True)]
    cc = [0.01 * v / max(cur) for v in cur]
    gap = [1 - v for v in cc]
    sr = [(v / max(gap)) ** 2.5 for v in gap]
    assert torch.allclose(m.cc, torch.tensor(cc), atol=1e-6)
    assert torch.allclose(m.sampling, torch.tensor(sr), atol=1e-6)


def test_uamt_threshold_and_uncertainty_mask() -> None:
    # epoch 1 -> t = 0: r = exp(-5); ln 2 (reference) vs ln K (fixed)
    r0 = math.exp(-5.0)
    assert uamt_threshold(1, 100, 14, "reference") == pytest.approx(
        (0.75 + 0.25 * r0) * math.log(2))
    assert uamt_threshold(101, 100, 14, "fixed") == pytest.approx(math.log(14))
    mean = torch.tensor([[0.5, 0.5], [0.99, 0.01]]).T.reshape(1, 2, 1, 1, 2)
    h = predictive_entropy(mean).flatten()
    expected = [-(2 * 0.5 * math.log(0.5 + 1e-6)),
                -(0.99 * math.log(0.99 + 1e-6) + 0.01 * math.log(0.01 + 1e-6))]
    assert torch.allclose(h, torch.tensor(expected), atol=1e-6)
    mask = h < uamt_threshold(1, 100, 2, "reference")
    assert mask.tolist() == [False, True]
