"""The one on-disk layout every dataset is prepared into, and its loader.

A prepared dataset is a folder::

    <root>/<key>/
        manifest.json          classes, geometry profile, per-case shape/spacing/affine,
                               class voxel counts, intensity range and sha256 of both arrays
        images/<case>.npy      float32 (D, H, W) raw intensities (HU for CT)
        labels/<case>.npy      uint8   (D, H, W) class indices, background 0
        splits/<name>.txt      one case id per line (train, eval, test, labeled_20p, …)

The phantom generator and every real-data importer write this layout through
:func:`write_prepared`, which builds the folder under a temporary name and renames it when
complete, so an interrupted preparation leaves nothing half-written. Arrays are read with
``np.load(mmap_mode="r")``: a case costs no I/O until it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dhcbench.errors import UserError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CaseRecord:
    """What the manifest knows about one case (no pixel data)."""

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


@dataclass(frozen=True)
class PreparedCase:
    """One case handed to :func:`write_prepared` by a generator or importer."""

    case_id: str
    image: np.ndarray  # float32 (D, H, W)
    label: np.ndarray  # integer (D, H, W)
    spacing: tuple[float, float, float]
    affine: np.ndarray | None = None
    modality: str = "CT"
    source_shape: tuple[int, ...] = ()


@dataclass
class PreparedDataset:
    """A prepared dataset folder: manifest, splits and lazy access to the arrays."""

    path: Path
    name: str
    class_names: tuple[str, ...]
    profile: str
    cases: dict[str, CaseRecord]
    splits: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image(self, case_id: str) -> np.ndarray:
        """Raw intensities float32 (D, H, W), memory-mapped."""
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _default_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    # Array axes are (z, y, x); the affine maps (i, j, k) in that order to world mm.
    return np.diag([*spacing, 1.0])


def first_duplicate(ids: Iterable[str]) -> str | None:
    """The smallest id listed more than once, or None."""
    counts = Counter(ids)
    repeated = sorted(i for i, n in counts.items() if n > 1)
    return repeated[0] if repeated else None


def write_prepared(
    dest: Path,
    *,
    name: str,
    class_names: tuple[str, ...],
    profile: str,
    cases: Iterable[PreparedCase],
    splits: dict[str, list[str]],
    meta: dict[str, Any] | None = None,
    on_case: Callable[[str], None] | None = None,
) -> PreparedDataset:
    """Write a prepared dataset to ``dest`` atomically (temporary folder, then rename).

    ``dest`` must not exist yet. Labels are stored as uint8 and must lie in
    ``[0, len(class_names))``; images as float32. Raises UserError on bad input, leaving
    ``dest`` untouched.
    """
    dest = Path(dest)
    if dest.exists():
        raise UserError(f"{dest}: already exists; remove it or choose another output folder")
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    # Folders above ``dest`` that this call creates are removed again on failure, so a
    # failed preparation leaves the output folder as it was (absent if it was absent).
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    try:
        try:
            tmp.mkdir(parents=True)
        except OSError as exc:
            raise UserError(f"{dest.parent}: output folder cannot be written"
                            f" ({exc.strerror})") from exc
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        (tmp / "splits").mkdir()
        records: dict[str, CaseRecord] = {}
        k = len(class_names)
        for case in cases:
            if case.case_id in records:
                raise UserError(f"duplicate case id {case.case_id!r}")
            image = np.ascontiguousarray(case.image, dtype=np.float32)
            label = np.asarray(case.label)
            if label.shape != image.shape[-3:]:
                raise UserError(
                    f"case {case.case_id}: label shape {label.shape} differs from the"
                    f" image's {image.shape}"
                )
            if label.min() < 0 or label.max() >= k:
                raise UserError(
                    f"case {case.case_id}: label values outside 0..{k - 1}"
                    f" (found {int(label.min())}..{int(label.max())})"
                )
            label = np.ascontiguousarray(label, dtype=np.uint8)
            img_path = tmp / "images" / f"{case.case_id}.npy"
            lab_path = tmp / "labels" / f"{case.case_id}.npy"
            np.save(img_path, image)
            np.save(lab_path, label)
            affine = case.affine if case.affine is not None else _default_affine(case.spacing)
            records[case.case_id] = CaseRecord(
                case_id=case.case_id,
                shape=tuple(int(s) for s in image.shape),  # type: ignore[arg-type]
                spacing=tuple(float(s) for s in case.spacing),  # type: ignore[arg-type]
                affine=tuple(tuple(float(v) for v in row) for row in np.asarray(affine)),
                class_counts=tuple(int(c) for c in np.bincount(label.ravel(), minlength=k)),
                intensity_range=(float(image.min()), float(image.max())),
                image_sha256=_sha256(img_path),
                label_sha256=_sha256(lab_path),
                modality=case.modality,
                source_shape=tuple(int(v) for v in case.source_shape),
            )
            if on_case is not None:
                on_case(case.case_id)
        if not records:
            raise UserError("no cases to write")
        for split_name, ids in splits.items():
            dup = first_duplicate(ids)
            if dup is not None:
                raise UserError(f"split {split_name!r} lists {dup} twice")
            unknown = sorted(set(ids) - set(records))
            if unknown:
                raise UserError(f"split {split_name!r} names ids not in the data: {unknown[:5]}")
            (tmp / "splits" / f"{split_name}.txt").write_text("".join(f"{i}\n" for i in ids))
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "class_names": list(class_names),
            "profile": profile,
            "meta": meta or {},
            "cases": [records[c].to_json() for c in sorted(records)],
            "splits": {s: list(v) for s, v in splits.items()},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # deepest first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return load_prepared(dest)


def load_prepared(path: Path) -> PreparedDataset:
    """Open a prepared dataset folder (reads only the manifest)."""
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
