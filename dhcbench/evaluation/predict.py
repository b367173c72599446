"""``dhcbench predict``: label maps for new images, written on the source images' grid.

Each image is brought into the run's training geometry exactly as ``dhcbench prepare`` does
(profile resize or resampling, then the run's intensity normalisation), segmented by
sliding-window inference with one or several trained methods (an ensemble: the mean of
their softmax probabilities, as nnU-Net ensembles its folds), and the label map (the argmax)
is resized back (nearest neighbour) to the source grid and saved with the source affine, so
it opens over the original scan in 3D Slicer or ITK-SNAP.

On request the class probabilities are saved too, as nnU-Net does: ``<case>_probabilities.npz``
with ``probabilities``, a float16 ``(K, X, Y, Z)`` array in the NIfTI file's own (i, j, k)
axis order, resized to the source grid the same way as the label map (nearest neighbour, so
their argmax is the label map, but for voxels where float16 rounding ties two classes), and
``class_names``, the K class names. Every file is written to a temporary name and renamed
into place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dhcbench.datasets.geometry import PROFILES, resize_image, resize_label, target_shape
from dhcbench.datasets.intensity import case_modality, normalise_image
from dhcbench.datasets.nifti import (
    header_shape,
    nifti_files,
    nifti_stem,
    read_volume,
    write_label_map,
)
from dhcbench.errors import UserError
from dhcbench.evaluation.inference import InferenceSettings, predict_case_probs, resolve_device
from dhcbench.methods.losses import class_argmax

if TYPE_CHECKING:
    from dhcbench.datasets.base import DatasetSpec
    from dhcbench.methods.base import Method


def _case_files(images: Path, channels: int) -> dict[str, list[Path]]:
    if images.is_file():
        files = [images]
    elif images.is_dir():
        files = nifti_files(images)
    else:
        raise UserError(f"{images}: images path does not exist")
    if not files:
        raise UserError(f"{images}: no .nii.gz or .nii images")
    cases: dict[str, list[Path]] = {}
    for path in files:
        stem = nifti_stem(path)
        if channels > 1 or stem.endswith("_0000"):
            stem = stem.rsplit("_", 1)[0] if "_" in stem else stem
        cases.setdefault(stem, []).append(path)
    for case, paths in cases.items():
        if len(paths) != channels:
            raise UserError(f"{paths[0]}: case {case} has {len(paths)} channel file(s), the"
                            f" run's model takes {channels}")
        if len({header_shape(path) for path in paths}) > 1:
            raise UserError(f"{paths[0]}: channels of case {case} differ in shape")
    return cases


def ensemble_probs(methods: Sequence[Method], image: np.ndarray, dspec: DatasetSpec,
                   evaluation: InferenceSettings, device: torch.device) -> torch.Tensor:
    """Mean of the methods' sliding-window probabilities of one case (training geometry).

    Each method's probabilities are those of
    :func:`~dhcbench.evaluation.inference.predict_case_probs` (for a co-training method,
    the softmax of its two branches' averaged logits, as in testing); returns ``(K, D, H,
    W)`` float32 on the CPU.
    """
    total: torch.Tensor | None = None
    for method in methods:
        probs = predict_case_probs(method.predict, image, dspec, evaluation, device, amp=True)
        total = probs if total is None else total + probs
    if total is None:
        raise ValueError("ensemble_probs needs at least one method")
    return total / len(methods)


def source_grid_probs(probs: torch.Tensor, shape: Sequence[int]) -> np.ndarray:
    """Probabilities on the source grid, in the NIfTI file's axis order.

    ``(K, D, H, W)`` probabilities are resized (nearest neighbour, like the label map) to
    the source's (z, y, x) ``shape`` and transposed to the file's (i, j, k) order: float16
    ``(K, X, Y, Z)``.
    """
    out = np.empty((probs.shape[0], *reversed(tuple(shape))), dtype=np.float16)
    for k, channel in enumerate(probs.numpy()):
        out[k] = resize_label(channel, shape).transpose(2, 1, 0)
    return out


def _write_case(out: Path, case: str, labels: np.ndarray, affine: np.ndarray,
                probs: np.ndarray | None, class_names: Sequence[str]) -> list[Path]:
    """Write one case's label map (and probabilities) under temporary names, then rename."""
    targets = [out / f"{case}.nii.gz"]
    tmps = [out / f".{case}.tmp.nii.gz"]
    if probs is not None:
        targets.append(out / f"{case}_probabilities.npz")
        tmps.append(out / f".{case}_probabilities.tmp.npz")
    try:
        write_label_map(tmps[0], labels, affine)
        if probs is not None:
            with open(tmps[1], "wb") as handle:
                np.savez_compressed(handle, probabilities=probs,
                                    class_names=np.array(class_names, dtype=str))
        for tmp, target in zip(tmps, targets, strict=True):
            os.replace(tmp, target)
    except OSError as exc:
        raise UserError(f"{targets[0]}: cannot write ({exc.strerror})") from exc
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
    return targets


def segment_images(method: Method | Sequence[Method], dspec: DatasetSpec,
                   meta: Mapping[str, Any], evaluation: InferenceSettings, images: Path,
                   out: Path, device: str = "auto",
                   on_case: Callable[[int, int], None] | None = None,
                   save_probabilities: bool = False) -> list[Path]:
    """Segment every image (file or folder) with ``method``; write label maps on the source grid.

    ``method`` (or each of several methods, whose probabilities are averaged: an ensemble)
    was trained on the dataset of ``dspec``, whose prepared-data ``meta`` (target spacing,
    channel names, intensity statistics) says how its images were brought into the training
    geometry. A case is one NIfTI file per channel (nnU-Net naming ``<case>_0000.nii.gz``
    …). Writes one ``<case>.nii.gz`` integer label map per case to ``out``, with the source
    image's shape and affine, and with ``save_probabilities`` a ``<case>_probabilities.npz``
    beside it (see the module's docstring); returns the label maps' paths. ``on_case`` is
    called with (cases done, cases in all) after each case.
    """
    methods = [method] if not isinstance(method, Sequence) else list(method)
    dev = resolve_device(device)
    for m in methods:
        m.to(dev)
    profile = dspec.profile if dspec.profile in PROFILES else "native"
    spacing = meta.get("spacing")
    cases = _case_files(Path(images), dspec.channels)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    written = []
    for i, (case, paths) in enumerate(sorted(cases.items())):
        volumes = [read_volume(p) for p in sorted(paths)]
        first = volumes[0]
        if any(v.data.shape != first.data.shape for v in volumes):
            raise UserError(f"{paths[0]}: channels of case {case} differ in shape")
        shape = target_shape(profile, dspec.name, first.data.shape, first.spacing, spacing)
        data = (volumes[0].data if len(volumes) == 1
                else np.stack([v.data for v in volumes]))
        image = normalise_image(
            resize_image(data, shape),
            case_modality(dspec.name, case, meta.get("channel_names")),
            dspec.intensity_window, meta)
        probs = ensemble_probs(methods, image, dspec, evaluation, dev)
        pred = class_argmax(probs, 0).numpy().astype(np.uint8)
        source = first.data.shape
        written.append(_write_case(
            out, case, resize_label(pred, source), first.affine,
            source_grid_probs(probs, source) if save_probabilities else None,
            dspec.class_names)[0])
        if on_case is not None:
            on_case(i + 1, len(cases))
    return written
