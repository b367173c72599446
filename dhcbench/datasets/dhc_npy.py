"""The reference's preprocessed layout (``dhc-npy``), imported as it is.

The reference code trains on ``npy/<id>_image.npy`` and ``npy/<id>_label.npy`` (already
resized, no spacing kept) with its split lists in ``splits/*.txt``. This importer copies
them into the prepared layout without resampling, under ``<dataset>-dhcnpy``, and keeps the
split lists as the dataset's own, after checking them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from itertools import combinations
from pathlib import Path

import numpy as np

from dhcbench.datasets.classes import AMOS_CLASSES, SYNAPSE_CLASSES
from dhcbench.datasets.intensity import case_modality
from dhcbench.datasets.raw_layouts import pair_cases
from dhcbench.datasets.storage import (
    PreparedCase,
    PreparedDataset,
    check_split_ids,
    folder_name,
    write_prepared,
)
from dhcbench.errors import UserError


def prepare_dhc_npy(src: Path, out_root: Path, task: str | None,
                    on_progress: Callable[[int, int], None] | None = None) -> PreparedDataset:
    """Import the reference's preprocessed ``npy/`` + ``splits/`` layout, taken as it is.

    Args:
        src: the folder holding ``npy/`` and, optionally, ``splits/``.
        out_root: the data root; the dataset is written to ``out_root/<task>-dhcnpy``.
        task: ``synapse`` or ``amos``, which decides the class list (the arrays carry none).
        on_progress: called with (cases written, cases in all).

    Returns:
        The prepared dataset: float32 (D, H, W) images and uint8 labels as stored in the
        source, spacing 1 mm assumed, profile ``dhcnpy``.

    Raises:
        UserError: for a missing task or folder, unpaired files, a bad split list, or a case
            whose arrays are not 3D, finite, of equal shape and with labels in range.
    """
    if task not in ("synapse", "amos"):
        raise UserError("dhc-npy needs --task synapse or --task amos (the class list)")
    classes = SYNAPSE_CLASSES if task == "synapse" else AMOS_CLASSES
    npy = src / "npy"
    if not npy.is_dir():
        raise UserError(f"{npy}: missing (expected npy/<id>_image.npy and npy/<id>_label.npy)")
    images = {p.name[: -len("_image.npy")]: p for p in sorted(npy.glob("*_image.npy"))}
    labels = {p.name[: -len("_label.npy")]: p for p in sorted(npy.glob("*_label.npy"))}
    pairs = pair_cases(images, labels)
    splits = _split_lists(src / "splits", images, npy)

    def cases() -> Iterator[PreparedCase]:
        for cid, img_path, lab_path in pairs:
            image, label = _case_arrays(img_path, lab_path, len(classes))
            yield PreparedCase(cid, image, label, (1.0, 1.0, 1.0),
                               modality=case_modality(task, cid))

    done = [0]

    def tick(_: str) -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], len(pairs))

    return write_prepared(
        Path(out_root) / folder_name(task, "dhcnpy"), name=task, class_names=classes,
        profile="dhcnpy", cases=cases(), splits=splits,
        meta={"source_format": "dhc-npy", "mri_normalization": "window",
              "note": "taken as it is: no resizing; voxel spacing unknown (1 mm assumed)"},
        on_case=tick,
    )


def _split_lists(folder: Path, known: Collection[str], npy: Path) -> dict[str, list[str]]:
    """The lists of ``folder/*.txt`` by file stem ({} without the folder), checked.

    Every id must be in ``known`` (the cases of ``npy``) and listed once per file, a
    ``labeled*`` list must not be empty, and train, eval and test must not share an id.
    """
    splits: dict[str, list[str]] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.txt")):
            splits[path.stem] = _split_list(path, known, npy)
    for a, b in combinations(("eval", "test", "train"), 2):
        common = sorted(set(splits.get(a, [])) & set(splits.get(b, [])))
        if common:
            raise UserError(f"{folder}: {a}.txt and {b}.txt share {common[0]}")
    return splits


def _split_list(path: Path, known: Collection[str], npy: Path) -> list[str]:
    """One split file's ids (one a line, blank lines skipped), checked against ``known``."""
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if path.stem.startswith("labeled") and not ids:
        raise UserError(f"{path}: the labeled list is empty")
    check_split_ids(ids, known,
                    repeated=lambda dup: f"{path}: lists an id twice ({dup})",
                    unknown=lambda missing: f"{path}: id {missing[0]} is not in {npy}")
    return ids


def _load_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file; UserError naming the file when it cannot be read."""
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable .npy file ({exc})") from exc


def _case_arrays(img_path: Path, lab_path: Path, num_classes: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One case's (float32 (D, H, W) image, int64 (D, H, W) label), checked.

    The image must be 3D and finite; the label of the same shape, integer-valued and in
    ``0..num_classes-1``. Errors name the offending file.
    """
    image = _load_npy(img_path).astype(np.float32)
    label = _load_npy(lab_path)
    if image.ndim != 3:
        raise UserError(f"{img_path}: expected a 3D array, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise UserError(f"{img_path}: image contains NaN or infinite intensities")
    if label.shape != image.shape:
        raise UserError(f"{lab_path}: shape {label.shape} differs from the image's"
                        f" {image.shape}")
    if not np.all(np.mod(label, 1) == 0):
        raise UserError(f"{lab_path}: label values are not integers")
    label = label.astype(np.int64)
    if label.min() < 0 or label.max() >= num_classes:
        raise UserError(f"{lab_path}: label values outside 0..{num_classes - 1}")
    return image, label
