"""What discovery finds in a downloaded NIfTI layout, and the Synapse layout.

Discovery looks at file names only (no volume is opened): it pairs every image with its
label by case id and names the dataset's classes. :mod:`dhcbench.datasets.importers` then
reads, checks and resamples the cases. The layouts described by a ``dataset.json`` (AMOS,
nnU-Net) are in :mod:`dhcbench.datasets.dataset_json`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhcbench.datasets.classes import SYNAPSE_CLASSES
from dhcbench.datasets.nifti import nifti_files, nifti_stem
from dhcbench.errors import UserError


@dataclass(frozen=True)
class RawCase:
    """One case of a raw layout: its image file(s), label file and modality."""

    case_id: str
    images: tuple[Path, ...]  # one file per channel
    label: Path
    modality: str = "CT"


@dataclass(frozen=True)
class RawDataset:
    """What discovery found: the dataset name, its classes and its cases."""

    name: str
    class_names: tuple[str, ...]
    cases: tuple[RawCase, ...]
    channels: int = 1
    meta: dict[str, Any] | None = None


def add_case_file(found: dict[str, Path], cid: str, path: Path) -> None:
    """Record ``path`` as case ``cid``; a second file for the same id is an error.

    Raises:
        UserError: naming ``path`` and the file already recorded for ``cid``.
    """
    if cid in found:
        other = found[cid]
        raise UserError(f"{path}: duplicate case id {cid} (also {other.parent.name}/{other.name})")
    found[cid] = path


def files_by_case_id(paths: list[Path]) -> dict[str, Path]:
    """NIfTI files keyed by their name less the extension (``amos_0001.nii.gz`` -> amos_0001).

    Raises:
        UserError: when two files give the same case id (``x.nii`` and ``x.nii.gz``).
    """
    found: dict[str, Path] = {}
    for path in paths:
        add_case_file(found, nifti_stem(path), path)
    return found


def pair_cases(images: dict[str, Path], labels: dict[str, Path]
               ) -> list[tuple[str, Path, Path]]:
    """(case id, image file, label file) for every case, sorted by id.

    Args:
        images: image files by case id.
        labels: label files by case id.

    Raises:
        UserError: naming the first (by id) image without a label, else the first label
            without an image.
    """
    for cid, path in sorted(images.items()):
        if cid not in labels:
            raise UserError(f"{path}: image without a label file (case {cid})")
    for cid, path in sorted(labels.items()):
        if cid not in images:
            raise UserError(f"{path}: label without an image file (case {cid})")
    return [(cid, images[cid], labels[cid]) for cid in sorted(images)]


def _numbered(folder: Path, prefix: str, what: str) -> dict[str, Path]:
    """The files ``<prefix>XXXX.nii.gz`` of ``folder`` by their ``XXXX``."""
    found: dict[str, Path] = {}
    for path in nifti_files(folder):
        m = re.fullmatch(rf"{prefix}(\w+)", nifti_stem(path))
        if not m:
            raise UserError(f"{path}: expected {what} named {prefix}XXXX.nii.gz")
        add_case_file(found, m.group(1), path)
    return found


def discover_synapse(src: Path) -> RawDataset:
    """The Synapse (BTCV abdomen) training set in one of its distributed layouts.

    Looks for ``img/`` + ``label/``, then ``imagesTr/`` + ``labelsTr/``, then
    ``Training/img/`` + ``Training/label/`` under ``src``; images are ``imgXXXX.nii.gz`` and
    labels ``labelXXXX.nii.gz``, the case id being ``XXXX`` (reference §2.1). The classes are
    Synapse's 13 organs and background; every case is CT.

    Raises:
        UserError: when no pair of folders exists, a file is misnamed, an id repeats or an
            image or label has no partner.
    """
    for img_dir, lab_dir in (("img", "label"), ("imagesTr", "labelsTr"),
                             ("Training/img", "Training/label")):
        if (src / img_dir).is_dir() and (src / lab_dir).is_dir():
            break
    else:
        raise UserError(f"{src}: no img/ and label/ (or imagesTr/ and labelsTr/) folders")
    images = _numbered(src / img_dir, "img", "an image")
    labels = _numbered(src / lab_dir, "label", "a label")
    cases = tuple(RawCase(cid, (img,), lab) for cid, img, lab in pair_cases(images, labels))
    return RawDataset("synapse", SYNAPSE_CLASSES, cases)
