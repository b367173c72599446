"""Pseudo-labelers of the cross (co-training) topology: how each branch learns from the other.

A pseudo-labeler turns both branches' logits ``(B, K, D, H, W)`` (labeled samples first,
``n_l`` of them) into the unsupervised loss, summed over the two branches. State (priors,
thresholds, confidence banks) lives in tensors exported by ``state_dict``.

- ``hard``: CPS — the other branch's argmax, through the configured unsupervised loss.
- ``depl``: DePL (Wang et al., CVPR 2022) — debiased pseudo-labels from per-voxel class priors.
- ``adsh``: Adsh (Guo & Li, ICML 2022) — adaptive per-class thresholds.
- ``cld``: CLD (Lin et al., MICCAI 2022) — confidence-based per-class sampling.

Each follows the DHC reference code (reference §8.6, §8.7, §8.11); ``variant="fixed"`` follows
the method's own paper where the code departs from it (documented per class).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dhcbench.methods.base import SetupContext
from dhcbench.methods.losses import class_argmax, masked_ce, negative_dice, weighted_ce
from dhcbench.registry import Registry

Logits = dict[str, torch.Tensor]
OTHER = {"a": "b", "b": "a"}


def unsupervised_loss(name: str, logits: torch.Tensor, pseudo: torch.Tensor,
                      weight: torch.Tensor) -> torch.Tensor:
    """``wce``: weighted CE on hard pseudo-labels (reference §7 step 5); ``ce+dice``: the DHC
    paper's Eq. 2, (weighted CE + weighted Dice) / 2, with the reference's negative soft Dice
    (1 - Dice up to a constant, so the same gradients)."""
    if name == "wce":
        return weighted_ce(logits, pseudo, weight)
    return 0.5 * (weighted_ce(logits, pseudo, weight) + negative_dice(logits, pseudo, weight))


class PseudoLabeler:
    """Base class: stateless hard cross pseudo-labels."""

    state_names: tuple[str, ...] = ()

    def __init__(self, num_classes: int, variant: str = "reference") -> None:
        self.num_classes = num_classes
        self.variant = variant

    def setup(self, labeled_counts: torch.Tensor, context: SetupContext) -> None:
        del labeled_counts, context

    def loss(self, logits: Logits, n_l: int, labels_l: torch.Tensor, weights: Logits,
             unsup: str) -> torch.Tensor:
        with torch.no_grad():
            pseudo = {k: class_argmax(z) for k, z in logits.items()}
        return sum(unsupervised_loss(unsup, z, pseudo[OTHER[k]], weights[k])  # type: ignore
                   for k, z in logits.items())

    def to(self, device: torch.device) -> None:
        for name in self.state_names:
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
            elif isinstance(value, dict):
                setattr(self, name, {k: v.to(device) for k, v in value.items()})

    def state_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in self.state_names:
            value = getattr(self, name)
            out[name] = ({k: v.clone() for k, v in value.items()} if isinstance(value, dict)
                         else value.clone() if isinstance(value, torch.Tensor) else value)
        return out

    def load_state_dict(self, state: dict[str, object]) -> None:
        for name in self.state_names:
            if name in state:
                setattr(self, name, state[name])


class DePL(PseudoLabeler):
    """Debiased pseudo-labels (DePL, Wang et al., CVPR 2022) as in the DHC code (§8.6).

    Each branch keeps a per-voxel class prior q̂ (1, K, D, H, W), initialised to 1/K and
    updated ``q̂ <- 0.99 q̂ + 0.01 mean_batch softmax(z_u)`` on the unlabeled samples. Its
    pseudo-labels are ``argmax softmax(z - τ ln q̂)`` on all samples (with the prior before
    this step's update), kept where that probability is >= 0.9; the other branch learns them
    with a masked CE (mean over all voxels). ``variant="fixed"`` also applies DePL's adaptive
    margin — the learner's logits are shifted by ``τ ln q̂`` of the labelling branch — which
    the reference computes but never uses.
    """

    state_names = ("prior",)

    def __init__(self, num_classes: int, variant: str = "reference", tau: float = 1.0,
                 threshold: float = 0.9, momentum: float = 0.99) -> None:
        super().__init__(num_classes, variant)
        self.tau, self.threshold, self.momentum = tau, threshold, momentum
        self.prior: dict[str, torch.Tensor] = {}

    def _prior(self, key: str, z: torch.Tensor) -> torch.Tensor:
        shape = (1, *z.shape[1:])
        if key not in self.prior or tuple(self.prior[key].shape) != shape:
            self.prior[key] = torch.full(shape, 1.0 / self.num_classes, device=z.device)
        return self.prior[key]

    def loss(self, logits: Logits, n_l: int, labels_l: torch.Tensor, weights: Logits,
             unsup: str) -> torch.Tensor:
        targets, masks = {}, {}
        with torch.no_grad():
            for k, z in logits.items():
                prior = self._prior(k, z)
                probs = torch.softmax(z.float() - self.tau * torch.log(prior), dim=1)
                conf, targets[k] = torch.max(probs, dim=1)
                masks[k] = conf >= self.threshold
            for k, z in logits.items():
                p_u = torch.softmax(z[n_l:].float(), dim=1).mean(0, keepdim=True)
                self.prior[k] = self.momentum * self.prior[k] + (1 - self.momentum) * p_u
        total = logits["a"].new_zeros(())
        for k, z in logits.items():
            o = OTHER[k]
            if self.variant == "fixed":
                z = z.float() + self.tau * torch.log(self.prior[o])
            total = total + masked_ce(z, targets[o], masks[o])
        return total


class Adsh(PseudoLabeler):
    """Adaptive thresholds (Adsh, Guo & Li, ICML 2022) as in the DHC code (§8.7).

    Each branch scores its unlabeled predictions into a bank; when ``refresh_every`` steps
    have filled it, the majority class m and ``ρ = #(p_m > 0.9 among voxels predicted m) /
    #(voxels predicted m)`` give per-class thresholds: the class-c probability at rank
    ``int(ρ N_c)`` (N_c voxels predicted c) among all bank voxels sorted in descending order.
    Thresholds start at 0. The bank is bounded: per class a histogram of its probabilities
    (``bins`` bins over [0, 1]) instead of the full-resolution softmax maps, so a threshold is
    exact to 1/bins. Loss (reference): CE of the learner's logits multiplied by the other
    branch's 0/1 mask ``[p_c > thr_c]`` against the other's argmax (the code masks logits);
    ``variant="fixed"`` masks samples instead, as the Adsh paper: CE on the voxels whose
    pseudo-label passes its class threshold (mean over all voxels).
    """

    state_names = ("thresholds", "pred_counts", "confident", "hist", "steps")

    def __init__(self, num_classes: int, variant: str = "reference", major_threshold: float = 0.9,
                 bins: int = 4096) -> None:
        super().__init__(num_classes, variant)
        self.major_threshold = major_threshold
        self.bins = bins
        self.refresh_every = 1
        k = num_classes
        self.thresholds = {b: torch.zeros(k) for b in "ab"}
        self.pred_counts = {b: torch.zeros(k, dtype=torch.float64) for b in "ab"}
        self.confident = {b: torch.zeros(k, dtype=torch.float64) for b in "ab"}
        self.hist = {b: torch.zeros(k, bins, dtype=torch.float64) for b in "ab"}
        self.steps = torch.zeros((), dtype=torch.long)

    def setup(self, labeled_counts: torch.Tensor, context: SetupContext) -> None:
        # The reference's bank has len(unlabeled) // 4 slots filled 2 per iteration.
        self.refresh_every = max(1, (context.num_unlabeled // 4) // 2)

    def _accumulate(self, key: str, p_u: torch.Tensor) -> None:
        k = self.num_classes
        flat = p_u.movedim(1, -1).reshape(-1, k).double()
        pred = class_argmax(flat, 1)
        self.pred_counts[key] = self.pred_counts[key] + torch.bincount(pred, minlength=k)
        conf = flat.gather(1, pred[:, None])[:, 0] > self.major_threshold
        self.confident[key] = self.confident[key] + torch.bincount(pred[conf], minlength=k)
        idx = (flat * self.bins).long().clamp_(0, self.bins - 1)
        offsets = torch.arange(k, device=flat.device) * self.bins
        self.hist[key] = self.hist[key] + torch.bincount(
            (idx + offsets).reshape(-1), minlength=k * self.bins).view(k, self.bins)

    def _refresh(self, key: str) -> None:
        counts = self.pred_counts[key]
        m = int(class_argmax(counts, 0))
        rho = float(self.confident[key][m] / counts[m].clamp_min(1))
        ranks = torch.floor(rho * counts)  # 0-based rank among all bank voxels, descending
        # Cumulative counts from the top bin down; the threshold is the lower edge of the bin
        # holding the voxel at that rank.
        from_top = self.hist[key].flip(1).cumsum(1)
        bin_from_top = torch.searchsorted(from_top.contiguous(), (ranks + 1)[:, None]).clamp(
            max=self.bins - 1)[:, 0]
        lower_edge = (self.bins - 1 - bin_from_top).double() / self.bins
        self.thresholds[key] = lower_edge.float().to(self.thresholds[key].device)
        for store in (self.pred_counts, self.confident, self.hist):
            store[key] = torch.zeros_like(store[key])

    def loss(self, logits: Logits, n_l: int, labels_l: torch.Tensor, weights: Logits,
             unsup: str) -> torch.Tensor:
        masks, targets = {}, {}
        with torch.no_grad():
            for k, z in logits.items():
                probs = torch.softmax(z.float(), dim=1)
                thr = self.thresholds[k].to(z.device).view(1, -1, *([1] * (z.ndim - 2)))
                masks[k] = (probs > thr).float()
                targets[k] = class_argmax(z)
                self._accumulate(k, probs[n_l:])
            self.steps = self.steps + 1
            if int(self.steps) % self.refresh_every == 0:
                for k in logits:
                    self._refresh(k)
        total = logits["a"].new_zeros(())
        for k, z in logits.items():
            o = OTHER[k]
            if self.variant == "fixed":
                keep = masks[o].gather(1, targets[o][:, None])[:, 0]
                total = total + masked_ce(z, targets[o], keep)
            else:
                total = total + F.cross_entropy(z.float() * masks[o], targets[o])
        return total


def cld_weights(counts: torch.Tensor, power: float = 1.0 / 3.0) -> torch.Tensor:
    """CLD's fixed class weights from the labeled counts: ``(max N / N_k) ** power`` with no
    epsilon (reference §8.11): a class absent from the labeled set gets an infinite weight."""
    n = counts.double()
    return (n.max() / n) ** power


class CLD(PseudoLabeler):
    """Confidence-based sampling (CLD, Lin et al., MICCAI 2022) as in the DHC code (§8.11).

    Each branch keeps a per-class confidence (mean softmax of the true class over labeled
    voxels, refreshed every ``update_iters`` steps; the first refresh replaces, later ones
    EMA with ``momentum``; initialised U(0, 1), shared by both branches). A voxel the branch
    itself predicts as c joins the loss with probability ``((1 - conf_c) / max(1 - conf))^0.5``;
    the loss is the class-weighted CE against the other branch's argmax on those voxels
    (mean over all voxels).
    """

    state_names = ("conf", "sums", "counts", "steps", "updated")

    def __init__(self, num_classes: int, variant: str = "reference", momentum: float = 0.999,
                 update_iters: int = 8, power: float = 0.5) -> None:
        super().__init__(num_classes, variant)
        self.momentum, self.update_iters, self.power = momentum, update_iters, power
        start = torch.rand(num_classes)
        self.conf = {"a": start, "b": start.clone()}
        self.sums = {b: torch.zeros(num_classes) for b in "ab"}
        self.counts = {b: torch.zeros(num_classes) for b in "ab"}
        self.steps = torch.zeros((), dtype=torch.long)
        self.updated = torch.zeros((), dtype=torch.bool)

    def sampling_rate(self, key: str) -> torch.Tensor:
        gap = 1.0 - self.conf[key]
        return (gap / gap.max()) ** self.power

    def loss(self, logits: Logits, n_l: int, labels_l: torch.Tensor, weights: Logits,
             unsup: str) -> torch.Tensor:
        k = self.num_classes
        masks, targets = {}, {}
        with torch.no_grad():
            for b, z in logits.items():
                probs = torch.softmax(z[:n_l].float(), dim=1)
                true = probs.gather(1, labels_l[:, None])[:, 0]
                flat_y = labels_l.reshape(-1)
                self.sums[b] = self.sums[b].to(z.device) + torch.bincount(
                    flat_y, weights=true.reshape(-1), minlength=k).float()
                self.counts[b] = self.counts[b].to(z.device) + torch.bincount(
                    flat_y, minlength=k).float()
                targets[b] = class_argmax(z)
                rate = self.sampling_rate(b).to(z.device)
                masks[b] = torch.rand(targets[b].shape, device=z.device) < rate[targets[b]]
            self.steps = self.steps + 1
            if int(self.steps) % self.update_iters == 0:
                for b in logits:
                    seen = self.counts[b] > 0
                    current = self.conf[b].to(seen.device).clone()
                    current[seen] = self.sums[b][seen] / self.counts[b][seen]
                    old = self.conf[b].to(seen.device)
                    self.conf[b] = current if not bool(self.updated) else torch.where(
                        seen, self.momentum * old + (1 - self.momentum) * current, old)
                    self.sums[b] = torch.zeros_like(self.sums[b])
                    self.counts[b] = torch.zeros_like(self.counts[b])
                self.updated = torch.ones((), dtype=torch.bool)
        total = logits["a"].new_zeros(())
        for b, z in logits.items():
            total = total + masked_ce(z, targets[OTHER[b]], masks[b], weights[b])
        return total


PSEUDO_LABELERS: Registry[Callable[..., PseudoLabeler]] = Registry("pseudo-labeler")
PSEUDO_LABELERS.add("hard", PseudoLabeler)
PSEUDO_LABELERS.add("depl", DePL)
PSEUDO_LABELERS.add("adsh", Adsh)
PSEUDO_LABELERS.add("cld", CLD)

__all__ = ["CLD", "PSEUDO_LABELERS", "Adsh", "DePL", "PseudoLabeler", "cld_weights",
           "unsupervised_loss"]
