"""Sliding-window inference over whole volumes (reference §10).

Windows of the training patch size start at ``min(stride * i, size - patch)`` with
``ceil((size - patch) / stride) + 1`` windows per axis; each window's softmax (of the
method's logits, which for co-training methods are the average of the two branches' logits)
is summed into a score map that is divided by the per-voxel window count; the argmax is the
prediction. Volumes smaller than the patch are zero-padded symmetrically and cropped back.
No test-time augmentation and no post-processing, as in the reference.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from dhcbench.errors import UserError
from dhcbench.methods.losses import class_argmax

if TYPE_CHECKING:
    from dhcbench.datasets.base import DatasetSpec

Shape3 = tuple[int, int, int]


class InferenceSettings(Protocol):
    """What sliding-window inference reads from a run's evaluation settings (a run spec's
    ``eval`` section satisfies it): the window stride (None: :func:`default_stride`) and
    how many windows go through the network at once."""

    @property
    def stride(self) -> tuple[int, int, int] | None: ...

    @property
    def window_batch(self) -> int: ...


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets along one axis (size >= patch)."""
    n = math.ceil((size - patch) / stride) + 1
    return [min(stride * i, size - patch) for i in range(n)]


@torch.inference_mode()
def sliding_window_probs(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    patch: Shape3,
    stride: Shape3,
    num_classes: int,
    device: torch.device,
    window_batch: int = 4,
) -> torch.Tensor:
    """Averaged softmax probabilities ``(K, D, H, W)`` (on CPU) of a ``(C, D, H, W)`` volume."""
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
        probs = torch.softmax(predict(x).float(), dim=1).cpu()
        for s, p in zip(sl, probs, strict=True):
            scores[(slice(None), *s)] += p
            counts[s] += 1.0
    scores /= counts
    crop = tuple(slice(b, b + s) for b, s in zip(before, shape, strict=True))
    return scores[(slice(None), *crop)]


def sliding_window_predict(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    patch: Shape3,
    stride: Shape3,
    num_classes: int,
    device: torch.device,
    window_batch: int = 4,
) -> np.ndarray:
    """Label map ``(D, H, W)`` uint8 (argmax of :func:`sliding_window_probs`)."""
    probs = sliding_window_probs(predict, image, patch, stride, num_classes, device, window_batch)
    return class_argmax(probs, 0).numpy().astype(np.uint8)


def default_stride(patch: Shape3) -> Shape3:
    """patch // 4 per axis: the reference's 16 / 32 / 32 for a 64×128×128 patch."""
    return tuple(max(1, p // 4) for p in patch)  # type: ignore[return-value]


def predict_case(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    dataset: DatasetSpec,
    evaluation: InferenceSettings,
    device: torch.device,
    amp: bool = False,
) -> np.ndarray:
    """A whole case's label map with a run's evaluation settings: the dataset's patch, the
    eval stride (default :func:`default_stride`) and window batch, under CUDA autocast when
    ``amp`` is set and the device is a GPU."""
    stride = evaluation.stride or default_stride(dataset.patch_size)
    with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
        return sliding_window_predict(predict, image, dataset.patch_size, stride,
                                      dataset.num_classes, device, evaluation.window_batch)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a device this machine cannot use is a
    UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine"
                        " (use auto or cpu)")
    if name != "cpu" and not name.startswith(("cuda", "mps")):
        raise UserError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(name)
