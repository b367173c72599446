"""A prepared dataset on disk: its manifest records and read access to its arrays.

The layout is described in :mod:`dhcbench.datasets.storage`, which writes it; this module
reads it. Arrays are read with ``np.load(mmap_mode="r")``: a case costs no I/O until it is
used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dhcbench.errors import UserError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CaseRecord:
    """What the manifest knows about one case (no pixel data).

    ``shape`` is the stored image's (D, H, W) (with a leading C for several channels),
    ``intensity_range`` its (min, max) in the stored units (HU for CT); the two hashes are
    SHA-256 of the ``.npy`` files, so a changed array is detectable.
    """

    case_id: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # mm, (z, y, x)
    affine: tuple[tuple[float, ...], ...]  # 4x4 voxel (i, j, k) -> world, of the source image
    class_counts: tuple[int, ...]  # voxels per class, background first
    intensity_range: tuple[float, float]
    image_sha256: str
    label_sha256: str
    modality: str = "CT"  # CT or MR (chooses the intensity normalisation)
    source_shape: tuple[int, ...] = ()  # (i, j, k) of the source file; () if generated

    def to_json(self) -> dict[str, Any]:
        """The record as its manifest entry (lists for tuples; the id under ``id``)."""
        return {
            "id": self.case_id,
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "affine": [list(r) for r in self.affine],
            "class_counts": list(self.class_counts),
            "intensity_range": list(self.intensity_range),
            "image_sha256": self.image_sha256,
            "label_sha256": self.label_sha256,
            "modality": self.modality,
            "source_shape": list(self.source_shape),
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> CaseRecord:
        """The record of a manifest entry written by :meth:`to_json`.

        Entries written before ``modality`` and ``source_shape`` existed read as CT with an
        unknown source shape. Raises KeyError, TypeError or ValueError on a malformed entry.
        """
        return CaseRecord(
            case_id=str(d["id"]),
            shape=tuple(int(v) for v in d["shape"]),  # type: ignore[arg-type]
            spacing=tuple(float(v) for v in d["spacing"]),  # type: ignore[arg-type]
            affine=tuple(tuple(float(v) for v in r) for r in d["affine"]),
            class_counts=tuple(int(v) for v in d["class_counts"]),
            intensity_range=tuple(float(v) for v in d["intensity_range"]),  # type: ignore[arg-type]
            image_sha256=str(d["image_sha256"]),
            label_sha256=str(d["label_sha256"]),
            modality=str(d.get("modality", "CT")),
            source_shape=tuple(int(v) for v in d.get("source_shape", [])),
        )


@dataclass
class PreparedDataset:
    """A prepared dataset folder: manifest, splits and lazy access to the arrays.

    ``cases`` maps case id to its record, ``splits`` a split name to its ids (empty for a
    NIfTI import), ``meta`` holds what the importer recorded (source format, MR
    normalisation, channel names, intensity window).
    """

    path: Path
    name: str
    class_names: tuple[str, ...]
    profile: str
    cases: dict[str, CaseRecord]
    splits: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """K, the number of classes, background included."""
        return len(self.class_names)

    def image(self, case_id: str) -> np.ndarray:
        """Raw intensities float32 (D, H, W), or (C, D, H, W), memory-mapped (HU for CT)."""
        return np.load(self.path / "images" / f"{case_id}.npy", mmap_mode="r")

    def label(self, case_id: str) -> np.ndarray:
        """Class indices uint8 (D, H, W), memory-mapped."""
        return np.load(self.path / "labels" / f"{case_id}.npy", mmap_mode="r")

    def class_counts(self, case_ids: Iterable[str]) -> np.ndarray:
        """Summed voxel counts per class (K,) int64 over ``case_ids``, from the manifest."""
        total = np.zeros(self.num_classes, dtype=np.int64)
        for cid in case_ids:
            total += np.asarray(self.cases[cid].class_counts, dtype=np.int64)
        return total


def folder_name(dataset: str, profile: str) -> str:
    """The folder of a prepared dataset under the data root: ``<dataset>-<profile>``.

    ``synapse-dhc2023``, ``amos-dhcnpy``, ``nnunet-<slug>-native``.
    """
    return f"{dataset}-{profile}"


def load_prepared(path: Path) -> PreparedDataset:
    """Open a prepared dataset folder (reads only the manifest).

    Raises:
        UserError: when ``path`` has no manifest or the manifest cannot be read.
    """
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise UserError(f"{mf}: no manifest; this folder is not a prepared dhcbench dataset")
    try:
        data = json.loads(mf.read_text())
        cases = {c["id"]: CaseRecord.from_json(c) for c in data["cases"]}
        return PreparedDataset(
            path=path,
            name=str(data["name"]),
            class_names=tuple(data["class_names"]),
            profile=str(data["profile"]),
            cases=cases,
            splits={k: [str(i) for i in v] for k, v in data["splits"].items()},
            meta=dict(data.get("meta", {})),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{mf}: unreadable manifest ({exc})") from exc
