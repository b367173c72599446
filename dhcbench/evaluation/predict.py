"""``dhcbench predict``: label maps for new images, written on the source images' grid.

Each image is brought into the run's training geometry exactly as ``dhcbench prepare`` does
(profile resize or resampling, then the run's intensity normalisation), segmented with the
run's best checkpoint by sliding-window inference, and the label map is resized back
(nearest neighbour) to the source grid and saved with the source affine, so it opens over the
original scan in 3D Slicer or ITK-SNAP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dhcbench.datasets.geometry import PROFILES, resize_image, resize_label, target_shape
from dhcbench.datasets.intensity import case_modality, normalise_image
from dhcbench.datasets.nifti import nifti_files, nifti_stem, read_volume, write_label_map
from dhcbench.errors import UserError
from dhcbench.evaluation.inference import InferenceSettings, predict_case, resolve_device

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
    return cases


def segment_images(method: Method, dspec: DatasetSpec, meta: Mapping[str, Any],
                   evaluation: InferenceSettings, images: Path, out: Path, device: str = "auto",
                   on_case: Callable[[int, int], None] | None = None) -> list[Path]:
    """Segment every image (file or folder) with ``method``; write label maps on the source grid.

    ``method`` was trained on the dataset of ``dspec``, whose prepared-data ``meta`` (target
    spacing, channel names, intensity statistics) says how its images were brought into the
    training geometry. A case is one NIfTI file per channel (nnU-Net naming
    ``<case>_0000.nii.gz`` …). Writes one ``<case>.nii.gz`` integer label map per case to
    ``out``, with the source image's shape and affine, and returns the paths; ``on_case``
    is called with (cases done, cases in all) after each case.
    """
    dev = resolve_device(device)
    method.to(dev)
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
        pred = predict_case(method.predict, image, dspec, evaluation, dev, amp=True)
        path = out / f"{case}.nii.gz"
        write_label_map(path, resize_label(pred, first.data.shape), first.affine)
        written.append(path)
        if on_case is not None:
            on_case(i + 1, len(cases))
    return written
