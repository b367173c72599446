"""The one on-disk layout every dataset is prepared into, and its writer.

A prepared dataset is a folder::

    <root>/<key>/
        manifest.json          classes, geometry profile, per-case shape/spacing/affine,
                               class voxel counts, intensity range and sha256 of both arrays
        images/<case>.npy      float32 (D, H, W) raw intensities (HU for CT)
        labels/<case>.npy      uint8   (D, H, W) class indices, background 0
        splits/<name>.txt      one case id per line (train, eval, test, labeled_20p, …)

The phantom generator and every real-data importer write this layout through
:func:`write_prepared`, which builds the folder under a temporary name and renames it when
complete, so an interrupted preparation leaves nothing half-written. Reading is
:mod:`dhcbench.datasets.prepared` (:func:`load_prepared`, :class:`PreparedDataset`); its
names are importable from here as well.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dhcbench.datasets.prepared import (
    FORMAT_VERSION,
    MANIFEST,
    CaseRecord,
    PreparedDataset,
    folder_name,
    load_prepared,
)
from dhcbench.errors import UserError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "CaseRecord",
    "PreparedCase",
    "PreparedDataset",
    "check_split_ids",
    "first_duplicate",
    "folder_name",
    "load_prepared",
    "write_prepared",
]


@dataclass(frozen=True)
class PreparedCase:
    """One case handed to :func:`write_prepared` by a generator or importer.

    The arrays are converted when written: the image to float32, the label to uint8.
    """

    case_id: str
    image: np.ndarray  # float (D, H, W), or (C, D, H, W) with several channels; HU for CT
    label: np.ndarray  # integer (D, H, W) class indices, background 0
    spacing: tuple[float, float, float]  # mm, (z, y, x)
    affine: np.ndarray | None = None  # 4x4 source voxel (i, j, k) -> world; None: diagonal
    modality: str = "CT"
    source_shape: tuple[int, ...] = ()


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
    """The smallest id listed more than once, or None.

    "Smallest" in string order, so the error a caller raises is the same on every run.
    """
    counts = Counter(ids)
    repeated = sorted(i for i, n in counts.items() if n > 1)
    return repeated[0] if repeated else None


def check_split_ids(ids: Sequence[str], known: Collection[str], *,
                    repeated: Callable[[str], str],
                    unknown: Callable[[list[str]], str]) -> None:
    """Refuse a split list that names an id twice or an id that is not among ``known``.

    Repeats are checked first. The caller words the error, so that it can name the list the
    way its user wrote it (a split name, a file).

    Args:
        ids: the split list as given.
        known: the case ids that exist.
        repeated: the message for the smallest id listed more than once.
        unknown: the message for the ids not in ``known`` (sorted, at least one).

    Raises:
        UserError: with the message of the first problem found.
    """
    dup = first_duplicate(ids)
    if dup is not None:
        raise UserError(repeated(dup))
    missing = sorted(set(ids) - set(known))
    if missing:
        raise UserError(unknown(missing))


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

    Args:
        dest: the dataset folder to create.
        name: the dataset's name in the manifest.
        class_names: the classes, background first.
        profile: the geometry profile the volumes were prepared in.
        cases: the cases, consumed once (a generator is read lazily, case by case).
        splits: case-id lists by split name, written as ``splits/<name>.txt``; every id must
            be among ``cases`` and listed once.
        meta: free-form facts about the source, stored in the manifest.
        on_case: called with each case id once its arrays are written.

    Returns:
        The written dataset, opened with :func:`load_prepared`.
    """
    dest = Path(dest)
    if dest.exists():
        raise UserError(f"{dest}: already exists; remove it or choose another output folder")
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    # Folders above ``dest`` that this call creates are removed again on failure, so a
    # failed preparation leaves the output folder as it was (absent if it was absent).
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    try:
        _make_folders(tmp, dest)
        records = _write_cases(tmp, cases, len(class_names), on_case)
        for split_name, ids in splits.items():
            _write_split(tmp, split_name, ids, records)
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
        _remove_partial(tmp, created)
        raise
    return load_prepared(dest)


def _make_folders(tmp: Path, dest: Path) -> None:
    """The temporary dataset folder ``tmp`` (and its parents) with its three sub-folders."""
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"{dest.parent}: output folder cannot be written"
                        f" ({exc.strerror})") from exc
    for sub in ("images", "labels", "splits"):
        (tmp / sub).mkdir()


def _remove_partial(tmp: Path, created: list[Path]) -> None:
    """Remove a failed write: the temporary folder and the parents it created."""
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in created:  # deepest first; only if still empty
        try:
            folder.rmdir()
        except OSError:
            break


def _write_cases(tmp: Path, cases: Iterable[PreparedCase], k: int,
                 on_case: Callable[[str], None] | None) -> dict[str, CaseRecord]:
    """Write every case's arrays under ``tmp``; their manifest records by case id."""
    records: dict[str, CaseRecord] = {}
    for case in cases:
        if case.case_id in records:
            raise UserError(f"duplicate case id {case.case_id!r}")
        records[case.case_id] = _write_case(tmp, case, k)
        if on_case is not None:
            on_case(case.case_id)
    if not records:
        raise UserError("no cases to write")
    return records


def _stored_arrays(case: PreparedCase, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A case's arrays as stored: (float32 image, uint8 label), checked against ``k`` classes.

    The image is (D, H, W) or (C, D, H, W); the label (D, H, W) must match its last three
    axes and hold values in ``0..k-1``.
    """
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
    return image, np.ascontiguousarray(label, dtype=np.uint8)


def _write_case(tmp: Path, case: PreparedCase, k: int) -> CaseRecord:
    """Save one case's arrays under ``tmp`` and describe them for the manifest."""
    image, label = _stored_arrays(case, k)
    img_path = tmp / "images" / f"{case.case_id}.npy"
    lab_path = tmp / "labels" / f"{case.case_id}.npy"
    np.save(img_path, image)
    np.save(lab_path, label)
    affine = case.affine if case.affine is not None else _default_affine(case.spacing)
    return CaseRecord(
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


def _write_split(tmp: Path, split_name: str, ids: list[str], known: Collection[str]) -> None:
    """Check one split list against the written cases and save it, one id a line."""
    check_split_ids(
        ids, known,
        repeated=lambda dup: f"split {split_name!r} lists {dup} twice",
        unknown=lambda missing: f"split {split_name!r} names ids not in the data: {missing[:5]}",
    )
    (tmp / "splits" / f"{split_name}.txt").write_text("".join(f"{i}\n" for i in ids))


