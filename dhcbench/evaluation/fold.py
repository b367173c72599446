"""Evaluation copies of a method's networks: BatchNorm folded, channels-last 3D.

Inference may run the networks in another form than training does, for speed only: a copy
with each eval-mode BatchNorm folded into the convolution before it (exact algebra, float32
rounding apart), in ``torch.channels_last_3d`` with its 1×1×1 heads writing contiguous
logits (:class:`PointwiseConv3d`). The training networks are never touched:
:func:`evaluation_predict` calls the method's ``predict`` on a shallow copy of the method
whose ``networks`` are the evaluation copy (``predict`` must reach its networks through
``self.networks``, as every registered method does).

Folding a BatchNorm with scale ``s = γ / sqrt(running_var + eps)`` into the convolution
before it: ``w' = w · s`` (per output channel) and ``b' = (b − running_mean) · s + β``.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
          nn.ConvTranspose3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    """Whether ``bn`` (run on ``conv``'s output only) can be folded into ``conv``."""
    if not isinstance(conv, _CONVS) or not isinstance(bn, _NORMS):
        return False
    if bn.training or bn.running_mean is None or bn.running_var is None:
        return False  # batch statistics: not an affine map of the input
    if bn.num_features != conv.out_channels or not conv.weight.is_floating_point():
        return False
    return not (isinstance(conv, _TRANSPOSED) and conv.groups != 1)


@torch.no_grad()
def fold_conv_bn(conv: nn.Module, bn: nn.Module, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None) -> None:
    """Fold the eval-mode BatchNorm ``bn`` into ``conv`` in place (``conv`` gets a bias).

    Afterwards ``conv(x)`` equals the former ``bn(conv(x))`` up to float rounding.
    ``weight`` and ``bias`` are the unfolded convolution's parameters when ``conv``'s own
    are not (a copy's refresh; a None bias is zero); by default ``conv``'s own. The
    per-channel scale and shift are computed in float64 (float32 on MPS); the weights
    are written once.
    """
    if weight is None:
        weight, bias = conv.weight, conv.bias
    wide = torch.float32 if weight.device.type == "mps" else torch.float64  # MPS: no f64
    scale = torch.rsqrt(bn.running_var.to(wide) + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.to(wide)
    shift = -bn.running_mean.to(wide) * scale
    if bn.affine:
        shift = shift + bn.bias.to(wide)
    if bias is not None:
        shift = shift + bias.to(wide) * scale
    view = [1] * weight.dim()
    view[1 if isinstance(conv, _TRANSPOSED) else 0] = -1
    torch.mul(weight, scale.to(weight.dtype).view(view), out=conv.weight)
    if conv.bias is None:
        conv.bias = nn.Parameter(shift.to(weight.dtype), requires_grad=weight.requires_grad)
    else:
        conv.bias.copy_(shift)


def _parents(root: nn.Module) -> dict[int, set[int]]:
    """For each submodule of ``root`` (by id), the ids of the modules that hold it."""
    parents: dict[int, set[int]] = {}
    for module in root.modules():
        for child in module.children():
            parents.setdefault(id(child), set()).add(id(module))
    return parents


def fold_batchnorm(root: nn.Module) -> list[tuple[str, str]]:
    """Fold every (convolution, BatchNorm) pair of ``root``'s Sequentials, in place.

    A pair is two consecutive entries of an ``nn.Sequential``, the BatchNorm in eval mode
    with running statistics and the convolution held by that Sequential only (so its output
    goes nowhere else); the BatchNorm's entry becomes ``nn.Identity``. Modules shared
    between several parents through the same Sequential are folded once. Returns the
    folded pairs' (convolution, BatchNorm) names in ``root``.
    """
    parents = _parents(root)
    folded: list[tuple[str, str]] = []
    for name, seq in list(root.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        items = list(seq)
        for i in range(len(items) - 1):
            conv, bn = items[i], items[i + 1]
            if parents.get(id(conv)) != {id(seq)} or items.count(conv) != 1:
                continue
            if _foldable(conv, bn):
                fold_conv_bn(conv, bn)
                seq[i + 1] = nn.Identity()
                items[i + 1] = seq[i + 1]
                prefix = f"{name}." if name else ""
                folded.append((f"{prefix}{i}", f"{prefix}{i + 1}"))
    return folded


class PointwiseConv3d(nn.Conv3d):
    """A 1×1×1 ``Conv3d`` that returns contiguous logits from a channels-last input.

    For a ``torch.channels_last_3d`` input ``(B, C, D, H, W)``, whose memory is ``(B, DHW,
    C)``, the output ``(B, K, DHW)`` is ``W @ xᵀ + b`` per batch item: one matrix product
    straight into the contiguous layout that softmax and the score map read fastest (a
    network's head; the alternative is a channels-last output and a transposing copy).
    Other inputs go through ``Conv3d`` as usual.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Conv3d``'s output; contiguous for a channels-last 5-d input."""
        if x.dim() != 5 or x.is_contiguous() or not x.is_contiguous(
                memory_format=torch.channels_last_3d):
            return super().forward(x)
        b, c = x.shape[:2]
        rows = x.permute(0, 2, 3, 4, 1).reshape(b, -1, c)  # a view: (B, DHW, C)
        weight = self.weight.reshape(self.out_channels, c).to(x.dtype)
        if self.bias is None:
            out = torch.matmul(weight, rows.transpose(1, 2))
        else:
            bias = self.bias.to(x.dtype)[:, None]
            out = torch.baddbmm(bias.expand(b, -1, rows.shape[1]), weight.expand(b, -1, -1),
                                rows.transpose(1, 2))
        return out.view(b, self.out_channels, *x.shape[2:])


def contiguous_pointwise_outputs(root: nn.Module) -> int:
    """Make every plain 1×1×1 ``Conv3d`` of ``root`` a :class:`PointwiseConv3d`, in place.

    Plain: stride, dilation and groups 1, no padding. Returns how many were changed.
    """
    changed = 0
    for m in root.modules():
        if (type(m) is nn.Conv3d and m.kernel_size == (1, 1, 1) and m.stride == (1, 1, 1)
                and m.dilation == (1, 1, 1) and m.groups == 1
                and m.padding in ((0, 0, 0), "valid")):
            m.__class__ = PointwiseConv3d
            changed += 1
    return changed


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def _structure(module: nn.Module) -> tuple[object, ...]:
    """What an :class:`EvaluationCopy` depends on besides the values: modules and tensors."""
    return (tuple((n, type(m), m.training) for n, m in module.named_modules()),
            tuple((n, t.shape, t.dtype, t.device) for n, t in _tensors(module).items()))


class EvaluationCopy:
    """A copy of a module tree for inference only, refreshed from its source's values.

    The copy has no gradients and the source's train/eval modes; with ``fold_bn`` its
    eval-mode BatchNorms are folded into their convolutions (:func:`fold_batchnorm`), with
    ``channels_last`` its 5-d tensors are in ``torch.channels_last_3d``. :meth:`refresh`
    copies the source's current values in (and folds them again), so one copy serves while
    the source trains, as long as :attr:`structure` (modules, modes, tensor shapes) holds.
    The source is never modified.
    """

    def __init__(self, source: nn.Module, *, fold_bn: bool, channels_last: bool) -> None:
        self.structure = _structure(source)
        self.options = (fold_bn, channels_last)
        with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, even when
            self.module = copy.deepcopy(source)             # built under inference mode
            self.module.requires_grad_(False)
            self._folds = fold_batchnorm(self.module) if fold_bn else []
            if channels_last:
                self.module.to(memory_format=torch.channels_last_3d)
                contiguous_pointwise_outputs(self.module)
        modules = dict(self.module.named_modules())
        self._convs = [(modules[c], c, b) for c, b in self._folds]
        skip = {f"{c}.{k}" for c, _ in self._folds for k in ("weight", "bias")}
        self._plain = {n: t for n, t in _tensors(self.module).items() if n not in skip}

    @torch.no_grad()
    def refresh(self, source: nn.Module) -> nn.Module:
        """The copy with ``source``'s current values (same :attr:`structure`), folded again."""
        with torch.inference_mode(False):
            values = _tensors(source)
            for name, tensor in self._plain.items():
                tensor.copy_(values[name])
            for conv, conv_name, bn_name in self._convs:
                fold_conv_bn(conv, source.get_submodule(bn_name),
                             values[f"{conv_name}.weight"], values.get(f"{conv_name}.bias"))
        return self.module


_LOCK = threading.RLock()
_KEEP = 4  # evaluation copies kept, latest first (one per networks and options in use)
_KEPT: list[tuple[weakref.ref[nn.Module], EvaluationCopy]] = []


def _evaluation_networks(networks: nn.Module, fold_bn: bool, channels_last: bool) -> nn.Module:
    """The kept :class:`EvaluationCopy` of ``networks``, refreshed (or built anew)."""
    _KEPT[:] = [(ref, kept) for ref, kept in _KEPT if ref() is not None]
    for i, (ref, kept) in enumerate(_KEPT):
        if ref() is networks and kept.options == (fold_bn, channels_last):
            del _KEPT[i]
            if kept.structure == _structure(networks):
                _KEPT.insert(0, (ref, kept))
                return kept.refresh(networks)
            break
    kept = EvaluationCopy(networks, fold_bn=fold_bn, channels_last=channels_last)
    _KEPT.insert(0, (weakref.ref(networks), kept))
    del _KEPT[_KEEP:]
    return kept.module


@contextmanager
def evaluation_predict(predict: Callable[[torch.Tensor], torch.Tensor], *, fold_bn: bool,
                       channels_last: bool) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """``predict`` run on an evaluation copy of its method's networks, for the block.

    ``predict`` is a method's bound ``predict`` (its object has ``networks``, an
    ``nn.Module``): the block gets the same function bound to a shallow copy of the method
    whose ``networks`` are an :class:`EvaluationCopy` with the networks' current values
    (the last few copies are kept, weakly tied to their networks, and refreshed, so
    repeated calls do not build them again; blocks in several threads take turns). Any
    other callable, or both flags off, is yielded as it is. The method and its networks
    are never modified.
    """
    owner = getattr(predict, "__self__", None)
    func = getattr(predict, "__func__", None)
    networks = getattr(owner, "networks", None)
    if not (fold_bn or channels_last) or func is None or not isinstance(networks, nn.Module):
        yield predict
        return
    with _LOCK:
        twin = copy.copy(owner)
        twin.networks = _evaluation_networks(networks, fold_bn, channels_last)
        yield func.__get__(twin, type(owner))


def release_evaluation_copies() -> None:
    """Drop the kept evaluation copies (their memory); the next inference builds anew."""
    with _LOCK:
        _KEPT.clear()
