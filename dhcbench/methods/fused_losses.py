"""The losses of one network's step as terms of a fused softmax (reference §6 losses).

:func:`softmax_losses` computes several weighted-CE and negative-Dice terms of one
network's logits (labeled and pseudo-labeled samples alike) from one softmax, with a
backward written out, so that a step costs one softmax and one logits-sized gradient per
network. :func:`loss_terms` spells each configured loss as such terms;
:func:`composed_term` computes a term by the primitives of :mod:`dhcbench.methods.losses`,
the reference they are tested against.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from dhcbench.methods.losses import class_histogram, negative_dice, weighted_ce


@dataclass(frozen=True)
class Term:
    """One loss term of :func:`softmax_losses`, on the samples ``start:start + B_t`` of logits.

    ``kind`` ``"ce"``: :func:`weighted_ce`; ``"dice"``: :func:`negative_dice` (background
    excluded) with ``smooth``. ``target`` (B_t, D, H, W) int64, ``weight`` (K,) or None.
    """

    kind: str
    target: torch.Tensor
    weight: torch.Tensor | None = None
    start: int = 0
    smooth: float = 1.0


#: Each loss as ``(factor, kind, Dice smooth)`` terms summed (see :func:`loss_terms`).
_LOSS_TERMS: dict[str, tuple[tuple[float, str, float], ...]] = {
    "w_ce+dice": ((1.0, "ce", 1.0), (1.0, "dice", 1.0)),
    "wce": ((1.0, "ce", 1.0),),
    "(ce+dice)/2": ((0.5, "ce", 1.0), (0.5, "dice", 1e-8)),
    "ce+dice": ((0.5, "ce", 1.0), (0.5, "dice", 1.0)),
}


def loss_terms(name: str, target: torch.Tensor, weight: torch.Tensor | None,
               start: int = 0) -> tuple[tuple[float, Term], ...]:
    """The loss ``name`` as ``(factor, term)`` pairs whose weighted sum it is.

    ``w_ce+dice``: weighted CE + weighted negative soft Dice (the reference's supervised
    default); ``wce``: weighted CE only (the DHC paper's Eq. 1, the reference's
    unsupervised loss); ``(ce+dice)/2``: UA-MT's, the mean of the two with Dice smooth 1e-8;
    ``ce+dice``: the DHC paper's Eq. 2, (weighted CE + weighted negative soft Dice) / 2.
    The terms (:class:`Term`) read the samples ``start:`` of the
    logits against ``target`` with the class weights ``weight`` (K,) (None: unweighted).
    """
    return tuple((factor, Term(kind, target, weight, start, smooth))
                 for factor, kind, smooth in _LOSS_TERMS[name])


def weighted_sum(pairs: Iterable[tuple[float, torch.Tensor]]) -> torch.Tensor:
    """``Σ factor · value`` in order (``0.5a + 0.5b`` is ``0.5 (a + b)`` to the bit)."""
    total: torch.Tensor | None = None
    for factor, value in pairs:
        term = value if factor == 1.0 else factor * value
        total = term if total is None else total + term
    assert total is not None
    return total


def composed_term(logits: torch.Tensor, term: Term) -> torch.Tensor:
    """One term by the loss primitives, on the logits' samples ``start:start + B_t``."""
    stop = term.start + term.target.shape[0]
    z = logits if (term.start, stop) == (0, logits.shape[0]) else logits[term.start:stop]
    if term.kind == "ce":
        return weighted_ce(z, term.target, term.weight)
    return negative_dice(z, term.target, term.weight, smooth=term.smooth)


def softmax_losses(logits: torch.Tensor, terms: tuple[Term, ...]) -> torch.Tensor:
    """The values (T,) float32 of ``terms`` on one network's logits (B, K, D, H, W), fused.

    Equal to :func:`weighted_ce` / :func:`negative_dice` on the slices up to float32
    rounding (values and gradients), at a fraction of the cost: one log-softmax of the
    logits for every term, turned into the softmax in place; a Dice without one-hot (true
    positives gathered and summed per class, ``2tp + fp + fn = Σp + n``); and a backward
    written out — ``p ⊙ (G - <G, p>)`` with the CE's ``G = c (1 - e_y)`` — that makes one
    logits-sized gradient, in place of the softmax, with no slice or one-hot in the graph.
    """
    return _SoftmaxLosses.apply(logits, tuple(terms))


def _ce_forward(logp: torch.Tensor, term: Term) -> tuple[torch.Tensor, torch.Tensor]:
    """A CE term's value (as :func:`weighted_ce`) and its per-voxel factor.

    The factor is ``w[y] / Σ w[y]`` (``1 / N`` unweighted), the weight of each voxel's
    ``-ln p_y`` in the value. A gather and a sum rather than ``nll_loss``, whose reduction
    runs on one thread.
    """
    logp_y = logp.gather(1, term.target[:, None])[:, 0]
    if term.weight is None:
        return -logp_y.mean(), torch.full_like(logp_y, 1.0 / logp_y.numel())
    w_y = torch.take(term.weight.float(), term.target)
    norm = w_y.sum().clamp_min(torch.finfo(torch.float32).tiny)
    return -(w_y * logp_y).sum() / norm, w_y / norm


def _dice_forward(p: torch.Tensor, term: Term) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """A Dice term's value and, for the backward, dL/dp's per-class parts and p at the target.

    With ``D_k = (2tp_k + s) / den_k``, ``den_k = Σp_k + n_k + s + 1e-8`` and the loss
    ``-mean_{k>=1} w_k D_k``: ``dL/dp_ik = a_k + b_k [y_i = k]``.
    """
    k, t = p.shape[1], term.target
    p_true = p.gather(1, t[:, None])[:, 0]
    tp = class_histogram(t, k, p_true.double()).float()
    den = p.sum([0, *range(2, p.ndim)]) + class_histogram(t, k).float() + term.smooth + 1e-8
    num = 2.0 * tp + term.smooth
    w = torch.ones_like(den) if term.weight is None else term.weight.float()
    w = torch.cat([w.new_zeros(1), w[1:]]) / (k - 1)
    a, b = w * num / den**2, -2.0 * w / den
    return -(num / den * w).sum(), (a, b, p_true)


#: Reused logits-sized buffers on the CPU, by (shape, dtype): see :func:`_scratch_like`.
_SCRATCH: dict[tuple[tuple[int, ...], torch.dtype], list[torch.Tensor]] = {}
_SCRATCH_PER_SHAPE = 4


def _scratch_like(z: torch.Tensor) -> torch.Tensor:
    """An uninitialised buffer like ``z`` for the softmax that becomes the gradient.

    On the CPU a fresh logits-sized allocation costs its page faults at every step (about
    as much as the log-softmax itself), so the memory of an earlier step is reused — only
    when nothing else holds it: the list keeps the buffers and hands out aliases, so a
    buffer's storage has no other user once every alias (the saved softmax, the gradient,
    anything that kept the gradient) is gone. Up to four per shape are kept; other devices
    allocate (their allocators cache).
    """
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if z.device.type != "cpu" or use_count is None:
        return torch.empty_like(z)
    kept = _SCRATCH.setdefault((tuple(z.shape), z.dtype), [])
    # Two users when free: the kept tensor and the temporary of ``untyped_storage()``.
    free = [buf for buf in kept if use_count(buf.untyped_storage()._cdata) == 2]
    if free:
        return free[0].detach()
    buf = torch.empty(z.shape, dtype=z.dtype)
    if len(kept) < _SCRATCH_PER_SHAPE:
        kept.append(buf)
    return buf.detach()


class _SoftmaxLosses(torch.autograd.Function):
    """The autograd function behind :func:`softmax_losses`."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, terms: tuple[Term, ...]) -> torch.Tensor:
        z = logits.float()
        logp = torch.log_softmax(z, 1, out=_scratch_like(z))  # + exp_: faster than softmax
        rows = [slice(t.start, t.start + t.target.shape[0]) for t in terms]
        parts: list[Any] = [_ce_forward(logp[r], t) if t.kind == "ce" else None
                            for r, t in zip(rows, terms, strict=True)]
        p = logp.exp_()  # the CE values are read: the buffer becomes the softmax
        parts = [part if part is not None else _dice_forward(p[r], t)
                 for part, r, t in zip(parts, rows, terms, strict=True)]
        ctx.terms, ctx.rows, ctx.parts, ctx.dtype = terms, rows, parts, logits.dtype
        ctx.save_for_backward(p)
        return torch.stack([value for value, _ in parts])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (p,) = ctx.saved_tensors
        scale = p.new_zeros(p.shape[0], *p.shape[2:])  # the factor of p at each voxel
        per_class: torch.Tensor | None = None  # and the one of each sample and class (Dice terms)
        sparse = []  # (rows, target, value added to the gradient at the target)
        for g, term, rows, (_, part) in zip(grad, ctx.terms, ctx.rows, ctx.parts, strict=True):
            if term.kind == "ce":
                factor = g * part
                scale[rows] += factor
                sparse.append((rows, term.target, -factor))
                continue
            a, b, p_true = part
            a, at_true = g * a, g * b[term.target] * p_true
            dot = (a.view(1, 1, -1) @ p[rows].flatten(2)).view_as(p_true) + at_true  # <G, p>
            scale[rows] -= dot
            per_class = p.new_zeros(p.shape[:2]) if per_class is None else per_class
            per_class[rows] += a
            sparse.append((rows, term.target, at_true))
        # p ⊙ (scale + per_class), in place: the saved softmax is not needed again. The
        # samples without a Dice term in one product, the others class by class.
        out, voxel = p, [1] * (p.ndim - 2)
        lo, hi = _span([r for t, r in zip(ctx.terms, ctx.rows, strict=True) if t.kind != "ce"])
        for rows in (slice(0, lo), slice(hi, p.shape[0])):
            out[rows].mul_(scale[rows, None])
        for k in range(p.shape[1]) if per_class is not None else ():
            out[lo:hi, k].mul_(scale[lo:hi] + per_class[lo:hi, k].view(-1, *voxel))
        for rows, target, value in _merged(sparse):
            out[rows].scatter_add_(1, target[:, None], value[:, None])
        return out.to(ctx.dtype), None


def _span(rows: list[slice]) -> tuple[int, int]:
    """The samples ``lo:hi`` that ``rows`` cover together (0, 0 when there are none)."""
    return (min(r.start for r in rows), max(r.stop for r in rows)) if rows else (0, 0)


def _merged(sparse: list[tuple[slice, torch.Tensor, torch.Tensor]]
            ) -> list[tuple[slice, torch.Tensor, torch.Tensor]]:
    """The ``(rows, target, value)`` entries with those on the same rows and target summed."""
    merged: dict[tuple[int, int, int], tuple[slice, torch.Tensor, torch.Tensor]] = {}
    for rows, target, value in sparse:
        key = (rows.start, rows.stop, id(target))
        if key in merged:
            value = merged[key][2] + value
        merged[key] = (rows, target, value)
    return list(merged.values())
