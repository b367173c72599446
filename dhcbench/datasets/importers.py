"""``dhcbench prepare``: read the layouts users download into the prepared-data layout.

Layouts:

- ``synapse`` — the Multi-Atlas Labeling Beyond the Cranial Vault training set:
  ``img/imgXXXX.nii.gz`` + ``label/labelXXXX.nii.gz`` (also ``imagesTr``/``labelsTr`` or
  ``Training/img``/``Training/label``); case id ``XXXX`` (reference §2.1); 13 organs.
- ``amos`` — the AMOS22 release: ``dataset.json``, ``imagesTr``/``labelsTr`` and
  ``imagesVa``/``labelsVa`` (``amos_XXXX.nii.gz``); 15 organs; ids >= 500 are MRI.
- ``nnunet`` — any nnU-Net raw dataset: ``dataset.json`` (v1 or v2 label map),
  ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``; classes from dataset.json.
- ``dhc-npy`` — the reference's preprocessed layout: ``npy/<id>_image.npy``,
  ``npy/<id>_label.npy`` and ``splits/*.txt``, taken as it is.

Every case is validated (pairs complete, 3D, same shapes, finite intensities, integer labels
in range) before anything heavy happens and again when read; any problem is a one-line
UserError naming the file. The output is written by :func:`write_prepared` (temporary
folder, renamed when complete), so a failed or interrupted preparation leaves the output
folder as it was.

This module is the entry point (:func:`prepare`) and the read-and-resample pass shared by
the NIfTI layouts; discovery of the layouts is in :mod:`dhcbench.datasets.raw_layouts`
(Synapse) and :mod:`dhcbench.datasets.dataset_json` (AMOS, nnU-Net), the ``dhc-npy``
import in :mod:`dhcbench.datasets.dhc_npy`.
"""


from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dhcbench.datasets.dataset_json import discover_amos, discover_nnunet
from dhcbench.datasets.dhc_npy import prepare_dhc_npy
from dhcbench.datasets.geometry import (
    PROFILES,
    resize_image,
    resize_label,
    resized_spacing,
    target_shape,
)
from dhcbench.datasets.nifti import header_shape, read_volume, require_3d
from dhcbench.datasets.raw_layouts import RawCase, RawDataset, discover_synapse
from dhcbench.datasets.storage import PreparedCase, PreparedDataset, folder_name, write_prepared
from dhcbench.errors import UserError

__all__ = [
    "DISCOVER",
    "FORMATS",
    "RawCase",
    "RawDataset",
    "discover_amos",
    "discover_nnunet",
    "discover_synapse",
    "folder_name",
    "prepare",
    "prepare_dhc_npy",
]

FORMATS = ("synapse", "amos", "nnunet", "dhc-npy")

#: The discovery function of every NIfTI layout (``dhc-npy`` has its own import).
DISCOVER: dict[str, Callable[[Path], RawDataset]] = {
    "synapse": discover_synapse,
    "amos": discover_amos,
    "nnunet": discover_nnunet,
}


def _precheck(raw: RawDataset) -> None:
    """Header-only pass over every case: 3D and equal shapes, before the heavy pass."""
    for case in raw.cases:
        shape = require_3d(header_shape(case.label), case.label)
        for img in case.images:
            ishape = require_3d(header_shape(img), img)
            if ishape != shape:
                raise UserError(f"{case.label}: shape {shape} differs from its image's"
                                f" {ishape}")


def _prepared_cases(raw: RawDataset, profile: str, spacing: tuple[float, ...] | None,
                    foreground: list[np.ndarray] | None = None) -> Iterator[PreparedCase]:
    """Read, validate and resample each case to the grid of ``profile``.

    Images become float32 (D, H, W), or (C, D, H, W) with several channels, resized
    trilinearly; labels are resized by nearest neighbour; the spacing (mm) is rescaled
    accordingly and the source affine and shape are kept. With ``foreground`` given, a
    sample of up to 10 000 foreground intensities of the first channel per case is appended
    to it (for the nnU-Net-style CT window).
    """
    k = len(raw.class_names)
    rng = np.random.default_rng(0)
    for case in raw.cases:
        label = read_volume(case.label, label=True, num_classes=k)
        channels = [read_volume(p) for p in case.images]
        for vol in channels:
            if vol.data.shape != label.data.shape:
                raise UserError(f"{case.label}: shape differs from its image's")
        image = channels[0].data if len(channels) == 1 else np.stack([c.data for c in channels])
        if foreground is not None:
            values = channels[0].data[label.data > 0]
            if values.size:
                foreground.append(rng.choice(values, size=min(values.size, 10_000)))
        shape = target_shape(profile, raw.name, label.data.shape, label.spacing, spacing)
        yield PreparedCase(
            case_id=case.case_id,
            image=resize_image(image, shape),
            label=resize_label(label.data, shape),
            spacing=resized_spacing(label.spacing, label.data.shape, shape),
            affine=label.affine,
            modality=case.modality,
            source_shape=label.source_shape,
        )


def prepare(
    fmt: str,
    src: Path,
    out_root: Path,
    profile: str = "dhc2023",
    spacing: tuple[float, float, float] | None = None,
    mri_normalization: str = "window",
    task: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PreparedDataset:
    """Import ``src`` (layout ``fmt``) into ``out_root/<dataset>-<profile>``.

    The NIfTI layouts are discovered, checked from their headers, then read and resampled
    case by case; ``dhc-npy`` is taken as it is (:func:`prepare_dhc_npy`). An nnU-Net
    dataset goes to ``nnunet-<slug of its name>-<profile>``; an all-CT one also gets an
    intensity window, the 0.5-99.5 percentile range of its foreground intensities (HU).

    Args:
        fmt: the source layout, one of :data:`FORMATS`.
        src: the downloaded dataset's folder.
        out_root: the data root the prepared folder is created in.
        profile: the geometry profile (``dhc2023``, ``dhc2024`` or ``native``).
        spacing: with the native profile, the voxel size (mm, z/y/x) to resample to.
        mri_normalization: ``window`` or ``zscore``, stored for MR cases' normalisation.
        task: for ``dhc-npy`` only, ``synapse`` or ``amos`` (the class list).
        on_progress: called with (cases written, cases in all).

    Returns:
        The prepared dataset.

    Raises:
        UserError: for a bad option, a missing or already prepared folder, or any problem
            with a case, naming the file.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown layout {fmt!r} (valid: {', '.join(FORMATS)})")
    if mri_normalization not in ("window", "zscore"):
        raise UserError(f"--mri-normalization {mri_normalization!r}: use window or zscore")
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"{src}: source folder does not exist")
    if fmt == "dhc-npy":
        return prepare_dhc_npy(src, out_root, task, on_progress)
    if profile not in PROFILES:
        raise UserError(f"unknown geometry profile {profile!r} (valid: {', '.join(PROFILES)})")
    if spacing is not None and profile != "native":
        raise UserError("--spacing applies to the native profile only")
    raw = DISCOVER[fmt](src)
    if not raw.cases:
        raise UserError(f"{src}: no cases found")
    _precheck(raw)
    key = raw.name if fmt != "nnunet" else f"nnunet-{_slug(raw.name)}"
    dest = Path(out_root) / folder_name(key, profile)
    if dest.exists():
        raise UserError(f"{dest}: already prepared; delete the folder to prepare it again")
    meta: dict[str, Any] = {
        "source_format": fmt, "mri_normalization": mri_normalization,
        "channels": raw.channels, "spacing": list(spacing) if spacing else None,
        **(raw.meta or {}),
    }
    # nnU-Net datasets of any body region: the CT window is the 0.5-99.5 percentile range
    # of foreground intensities (nnU-Net's choice), not the reference's abdominal window.
    ct_stats: list[np.ndarray] | None = (
        [] if fmt == "nnunet" and all(c.modality == "CT" for c in raw.cases) else None)
    done = [0]

    def tick(case_id: str) -> None:
        done[0] += 1
        if ct_stats is not None and done[0] == len(raw.cases) and ct_stats:
            sample = np.concatenate(ct_stats)
            meta["intensity_window"] = [float(np.percentile(sample, 0.5)),
                                        float(np.percentile(sample, 99.5))]
        if on_progress is not None:
            on_progress(done[0], len(raw.cases))

    return write_prepared(
        dest, name=key, class_names=raw.class_names, profile=profile,
        cases=_prepared_cases(raw, profile, spacing, ct_stats), splits={},
        meta=meta, on_case=tick,
    )


def _slug(text: str) -> str:
    """Lowercase letters and digits of ``text``, runs of anything else as one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


