"""Intensity rules shared by import, training and inference.

The CT window and min-max normalisation of the reference (§2.3), z-scoring for MR and
non-CT channels, and which modality a case is. numpy only, so that modules which only read
data or results do not load torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np


def normalise(volume: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Clip to ``window`` then min-max the whole volume to [0, 1] (reference §2.3).

    Args:
        volume: intensities of any shape (HU for CT).
        window: (low, high) in the volume's units, or None to min-max only.

    Returns:
        float32 of the same shape in [0, 1]; all zeros for a constant volume.
    """
    v = np.asarray(volume, dtype=np.float32)
    if window is not None:
        v = np.clip(v, window[0], window[1])
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return np.zeros_like(v)
    return ((v - lo) / (hi - lo)).astype(np.float32)


def zscore(volume: np.ndarray) -> np.ndarray:
    """(v - mean) / std of the whole volume (``--mri-normalization zscore``).

    Returns float32 of the same shape; a constant volume is only centred (std taken as 1).
    """
    v = np.asarray(volume, dtype=np.float32)
    std = float(v.std())
    return ((v - float(v.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def case_modality(dataset: str, case_id: str,
                  channel_names: Mapping[str, Any] | None = None) -> str:
    """``CT`` or ``MR``, the modality of one case.

    AMOS cases ``amos_XXXX`` with XXXX >= 500 are MRI; elsewhere the first channel's name
    decides (nnU-Net's dataset.json; CT when none is given).
    """
    match = re.fullmatch(r"amos_(\d+)", case_id)
    if dataset == "amos" and match:
        return "MR" if int(match.group(1)) >= 500 else "CT"
    first = str(next(iter((channel_names or {}).values()), "CT")).upper()
    return "CT" if first == "CT" else "MR"


def normalise_image(image: np.ndarray, modality: str, window: tuple[float, float] | None,
                    meta: Mapping[str, Any]) -> np.ndarray:
    """An image as the networks see it: float32, same shape, (D, H, W) or (C, D, H, W).

    MR cases of a dataset prepared with ``mri_normalization=zscore`` are z-scored;
    everything else is clipped to the window and min-max normalised (the reference applies
    its CT window to AMOS MRI too, §2.2). Multi-channel images (C, D, H, W) are normalised
    per channel: channels named CT by the dataset description (``meta["channel_names"]``) as
    above, every other channel z-scored (nnU-Net's convention).
    """
    if image.ndim == 4:
        names = meta.get("channel_names", {})
        return np.stack([
            normalise(image[c], window)
            if str(names.get(str(c), "CT")).upper() == "CT" else zscore(image[c])
            for c in range(image.shape[0])
        ])
    if modality == "MR" and meta.get("mri_normalization") == "zscore":
        return zscore(image)
    return normalise(image, window)
