"""Geometry profiles: the voxel grid a dataset is prepared in (reference §0, §2, §12 item 16).

- ``dhc2023``: every volume resized to 80×160×160 (trilinear for images, nearest for
  labels, align_corners False, spacing ignored) — what the released code did when the
  published numbers were produced.
- ``dhc2024``: the reference code at HEAD — Synapse at native depth with the in-plane size
  halved, AMOS (and other datasets) at 80×160×160.
- ``native``: the voxel grid is kept; with ``spacing`` given, volumes are resampled to that
  voxel size (mm).

Arrays are (z, y, x) = (D, H, W), the order SimpleITK gives and the reference uses. The new
spacing of a resized volume is the old one scaled by old size / new size, so the rigorous
contract still measures in mm; the source shape and affine are kept alongside, so a
prediction can be resampled back onto the source image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dhcbench.errors import UserError

PROFILES = ("dhc2023", "dhc2024", "native")
DHC_SHAPE = (80, 160, 160)

Shape3 = tuple[int, int, int]


def target_shape(
    profile: str,
    dataset: str,
    shape: Sequence[int],
    spacing: Sequence[float],
    target_spacing: Sequence[float] | None = None,
) -> Shape3:
    """The (D, H, W) a volume of ``shape`` and ``spacing`` (mm, z/y/x) is prepared to.

    ``dhc2023`` always gives 80×160×160; ``dhc2024`` keeps Synapse's depth and halves its
    in-plane size (80×160×160 for other datasets); ``native`` keeps ``shape``, or with
    ``target_spacing`` (mm, z/y/x) resamples to it, rounding to at least one voxel per axis.

    Raises:
        UserError: for an unknown profile.
    """
    if profile == "dhc2023":
        return DHC_SHAPE
    if profile == "dhc2024":
        if dataset == "synapse":
            return (int(shape[0]), int(shape[1]) // 2, int(shape[2]) // 2)
        return DHC_SHAPE
    if profile == "native":
        if target_spacing is None:
            return tuple(int(s) for s in shape)  # type: ignore[return-value]
        return tuple(  # type: ignore[return-value]
            max(1, int(round(n * sp / t)))
            for n, sp, t in zip(shape, spacing, target_spacing, strict=True)
        )
    raise UserError(f"unknown geometry profile {profile!r} (valid: {', '.join(PROFILES)})")


def resize_image(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear resize (align_corners False) of a (D, H, W) or (C, D, H, W) float volume.

    Returns a float32 array whose last three axes are ``shape`` (channels resized alike);
    a volume already of that size is only cast to float32.
    """
    if tuple(volume.shape[-3:]) == tuple(shape):
        return np.asarray(volume, dtype=np.float32)
    import torch  # imported here: modules that only read data or results need no torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    t = t[None, None] if t.ndim == 3 else t[None]
    out = F.interpolate(t, size=tuple(int(s) for s in shape), mode="trilinear",
                        align_corners=False)
    out = out[0, 0] if volume.ndim == 3 else out[0]
    return out.numpy()


def resize_label(label: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a (D, H, W) label map to ``shape``, keeping the dtype.

    Uses torch's ``nearest`` mode, as the reference does; a label map already of ``shape``
    is returned as it is.
    """
    if tuple(label.shape) == tuple(shape):
        return np.asarray(label)
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(label).astype(np.float32))[None, None]
    out = F.interpolate(t, size=tuple(int(s) for s in shape), mode="nearest")[0, 0]
    return out.numpy().astype(label.dtype)


def resized_spacing(spacing: Sequence[float], old: Sequence[int], new: Sequence[int]
                    ) -> tuple[float, float, float]:
    """Voxel size (mm, z/y/x) after resizing ``old`` to ``new`` voxels over the same extent.

    Each axis's spacing is scaled by old / new, so the field of view in mm is unchanged.
    """
    return tuple(  # type: ignore[return-value]
        float(s) * o / n for s, o, n in zip(spacing, old, new, strict=True)
    )
