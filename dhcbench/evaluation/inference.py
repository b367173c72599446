"""Sliding-window inference over whole volumes (reference §10).

Windows of the training patch size start at ``min(stride * i, size - patch)`` with
``ceil((size - patch) / stride) + 1`` windows per axis; each window's softmax (of the
method's logits, which for co-training methods are the average of the two branches' logits)
is summed into a score map that is divided by the per-voxel window count; the argmax is the
prediction. Volumes smaller than the patch are zero-padded symmetrically and cropped back.
No test-time augmentation and no post-processing, as in the reference.

:class:`InferenceOptions` choose how the networks run, for speed only: an evaluation copy
with BatchNorm folded into the convolutions and/or in channels-last 3D
(:mod:`dhcbench.evaluation.fold`; the training networks are never changed), and the
window batch. They change the probabilities by float rounding only (about 1e-5), so a
label can differ only where two classes tie to that precision.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from dhcbench.errors import UserError
from dhcbench.evaluation.fold import evaluation_predict
from dhcbench.methods.losses import class_argmax

if TYPE_CHECKING:
    from dhcbench.datasets.base import DatasetSpec

Shape3 = tuple[int, int, int]


class InferenceSettings(Protocol):
    """What sliding-window inference reads from a run's evaluation settings.

    A run spec's ``eval`` section satisfies it: the window stride (None:
    :func:`default_stride`) and how many windows go through the network at once.
    """

    @property
    def stride(self) -> tuple[int, int, int] | None:
        """Window step in voxels per axis (D, H, W); None for :func:`default_stride`."""

    @property
    def window_batch(self) -> int:
        """How many windows go through the network in one forward pass."""


@dataclass(frozen=True)
class InferenceOptions:
    """How sliding-window inference runs the networks: speed only, results to rounding.

    Attributes:
        channels_last: run the networks and the window batch in ``torch.channels_last_3d``
            (the networks through a copy; the training networks keep their format).
        fold_bn: evaluate a copy of the networks with each eval-mode BatchNorm folded into
            the convolution before it.
        window_batch: windows per forward pass; None for the run's ``eval.window_batch``.
    """

    channels_last: bool
    fold_bn: bool
    window_batch: int | None = None


def default_inference_options(device: torch.device) -> InferenceOptions:
    """The options used when a caller gives none, chosen by measurement for ``device``.

    BatchNorm folded everywhere (one pass less over every activation). Channels-last 3D on
    the CPU, where oneDNN runs 3-d convolutions in it without reordering copies: one
    80×160×160 volume, two F=16 V-Nets, 1 thread, against the plain path: folding ×1.18,
    channels-last ×1.48, both ×1.83 (2 threads: ×1.9–2.1), labels equal apart from
    rounding ties. Not on CUDA, where cuDNN's channels-last 3-d kernels pay mainly in half
    precision and nothing is measured yet. The window batch stays the run's
    (``eval.window_batch``) on every device: on the CPU 4 and 8 are within a few per cent
    of each other (2 is slower; 1 far slower, as PyTorch runs batch-1 deep convolutions
    without oneDNN).
    """
    return InferenceOptions(channels_last=device.type == "cpu", fold_bn=True,
                            window_batch=None)


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis, in voxels.

    ``size`` is the (padded) volume's extent, at least ``patch``; the windows start every
    ``stride`` voxels, the last one moved back to end at the border, so every voxel is
    covered and no window leaves the volume.
    """
    n = math.ceil((size - patch) / stride) + 1
    return [min(stride * i, size - patch) for i in range(n)]


def sliding_window_probs(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    patch: Shape3,
    stride: Shape3,
    num_classes: int,
    device: torch.device,
    window_batch: int = 4,
    *,
    options: InferenceOptions | None = None,
) -> torch.Tensor:
    """Averaged softmax probabilities of a whole volume by sliding-window inference.

    ``image`` is a float ``(C, D, H, W)`` volume (or ``(D, H, W)`` for one channel);
    ``predict`` maps a batch of windows ``(B, C, *patch)`` float32 on ``device`` to logits
    ``(B, num_classes, *patch)``. Windows of size ``patch`` step by ``stride`` voxels, at
    most ``window_batch`` per call (``options.window_batch`` when set); each voxel's
    probabilities are the mean of the softmax of the windows covering it. ``options``
    (default :func:`default_inference_options`) may run a method's bound ``predict`` on an
    evaluation copy of its networks (:func:`~dhcbench.evaluation.fold.evaluation_predict`)
    and the windows in channels-last 3D. Returns ``(K, D, H, W)`` float32 on the CPU, K =
    ``num_classes``, on the image's own grid (padding cropped back).
    """
    opts = options if options is not None else default_inference_options(device)
    batch = opts.window_batch or window_batch
    fmt = torch.channels_last_3d if opts.channels_last else torch.contiguous_format
    with evaluation_predict(predict, fold_bn=opts.fold_bn,
                            channels_last=opts.channels_last) as fn:
        return _accumulate(fn, image, patch, stride, num_classes, device, batch, fmt)


@torch.inference_mode()
def _accumulate(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    patch: Shape3,
    stride: Shape3,
    num_classes: int,
    device: torch.device,
    window_batch: int,
    memory_format: torch.memory_format,
) -> torch.Tensor:
    """:func:`sliding_window_probs` with the windows in ``memory_format`` (5-d batches)."""
    if image.ndim == 3:
        image = image[None]
    shape = image.shape[1:]
    pads = [max(0, p - s) for s, p in zip(shape, patch, strict=True)]
    before = [w // 2 for w in pads]
    if any(pads):
        image = np.pad(image, [(0, 0)] + [(b, w - b) for b, w in zip(before, pads, strict=True)])
    padded = image.shape[1:]
    vol = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    scores = torch.zeros((num_classes, *padded), dtype=torch.float32)
    counts = torch.zeros(padded, dtype=torch.float32)
    starts = [window_starts(s, p, st) for s, p, st in zip(padded, patch, stride, strict=True)]
    corners = list(itertools.product(*starts))
    for i in range(0, len(corners), window_batch):
        chunk = corners[i:i + window_batch]
        sl = [tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
              for corner in chunk]
        x = torch.stack([vol[(slice(None), *s)] for s in sl]).to(device)
        x = x.contiguous(memory_format=memory_format)
        probs = torch.softmax(predict(x).float(), dim=1).cpu()
        for s, p in zip(sl, probs, strict=True):
            scores[(slice(None), *s)] += p
            counts[s] += 1.0
    scores /= counts
    crop = tuple(slice(b, b + s) for b, s in zip(before, shape, strict=True))
    return scores[(slice(None), *crop)]


def sliding_window_predict(*args: Any, **kwargs: Any) -> np.ndarray:
    """Label map of a whole volume by sliding-window inference.

    Takes the arguments of :func:`sliding_window_probs` and returns the argmax over classes
    of its probabilities: ``(D, H, W)`` uint8 class indices on the image's own grid.
    """
    return class_argmax(sliding_window_probs(*args, **kwargs), 0).numpy().astype(np.uint8)


def default_stride(patch: Shape3) -> Shape3:
    """The evaluation stride used when a run gives none: a quarter of the patch per axis.

    ``patch // 4`` voxels (at least 1) along (D, H, W): the reference's 16 / 32 / 32 for a
    64×128×128 patch.
    """
    return tuple(max(1, p // 4) for p in patch)  # type: ignore[return-value]


def predict_case_probs(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    dataset: DatasetSpec,
    evaluation: InferenceSettings,
    device: torch.device,
    amp: bool = False,
    *,
    options: InferenceOptions | None = None,
) -> torch.Tensor:
    """A whole case's class probabilities with a run's evaluation settings.

    Same inference as :func:`predict_case` (the dataset's patch, the eval stride, default
    :func:`default_stride`, and window batch; CUDA autocast when ``amp`` is set and the
    device is a GPU; ``options`` as in :func:`sliding_window_probs`). Returns
    :func:`sliding_window_probs`' ``(K, D, H, W)`` float32 CPU tensor, whose argmax over
    classes is :func:`predict_case`'s label map.
    """
    stride = evaluation.stride or default_stride(dataset.patch_size)
    with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
        return sliding_window_probs(predict, image, dataset.patch_size, stride,
                                    dataset.num_classes, device, evaluation.window_batch,
                                    options=options)


def predict_case(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    dataset: DatasetSpec,
    evaluation: InferenceSettings,
    device: torch.device,
    amp: bool = False,
    *,
    options: InferenceOptions | None = None,
) -> np.ndarray:
    """A whole case's label map with a run's evaluation settings.

    ``image`` is the case's ``(C, D, H, W)`` (or ``(D, H, W)``) float volume in the
    training geometry; inference uses the dataset's patch, the eval stride (default
    :func:`default_stride`) and window batch, under CUDA autocast when ``amp`` is set and
    the device is a GPU, with ``options`` (None: :func:`default_inference_options` of
    ``device``). Returns the label map ``(D, H, W)`` uint8: the argmax of
    :func:`predict_case_probs`.
    """
    probs = predict_case_probs(predict, image, dataset, evaluation, device, amp,
                               options=options)
    return class_argmax(probs, 0).numpy().astype(np.uint8)


def resolve_device(name: str) -> torch.device:
    """The torch device a ``--device`` value names.

    ``auto`` is CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps``
    are taken as given. A device this machine cannot use is a UserError.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine"
                        " (use auto or cpu)")
    if name != "cpu" and not name.startswith(("cuda", "mps")):
        raise UserError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(name)
