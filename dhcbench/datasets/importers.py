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
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from dhcbench.datasets.classes import AMOS_CLASSES, SYNAPSE_CLASSES
from dhcbench.datasets.geometry import (
    PROFILES,
    resize_image,
    resize_label,
    resized_spacing,
    target_shape,
)
from dhcbench.datasets.intensity import case_modality
from dhcbench.datasets.nifti import (
    header_shape,
    nifti_files,
    nifti_stem,
    read_volume,
    require_3d,
)
from dhcbench.datasets.storage import (
    PreparedCase,
    PreparedDataset,
    first_duplicate,
    write_prepared,
)
from dhcbench.errors import UserError

FORMATS = ("synapse", "amos", "nnunet", "dhc-npy")


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


def _add(found: dict[str, Path], cid: str, path: Path) -> None:
    """Record ``path`` as case ``cid``; a second file for the same id is an error."""
    if cid in found:
        other = found[cid]
        raise UserError(f"{path}: duplicate case id {cid} (also {other.parent.name}/{other.name})")
    found[cid] = path


def _by_id(paths: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in paths:
        _add(found, nifti_stem(path), path)
    return found


def _pair(images: dict[str, Path], labels: dict[str, Path]) -> list[tuple[str, Path, Path]]:
    for cid, path in sorted(images.items()):
        if cid not in labels:
            raise UserError(f"{path}: image without a label file (case {cid})")
    for cid, path in sorted(labels.items()):
        if cid not in images:
            raise UserError(f"{path}: label without an image file (case {cid})")
    return [(cid, images[cid], labels[cid]) for cid in sorted(images)]


def discover_synapse(src: Path) -> RawDataset:
    """Synapse (BTCV abdomen) training set in one of its distributed layouts."""
    for img_dir, lab_dir in (("img", "label"), ("imagesTr", "labelsTr"),
                             ("Training/img", "Training/label")):
        if (src / img_dir).is_dir() and (src / lab_dir).is_dir():
            break
    else:
        raise UserError(f"{src}: no img/ and label/ (or imagesTr/ and labelsTr/) folders")
    images, labels = {}, {}
    for path in nifti_files(src / img_dir):
        m = re.fullmatch(r"img(\w+)", nifti_stem(path))
        if not m:
            raise UserError(f"{path}: expected an image named imgXXXX.nii.gz")
        _add(images, m.group(1), path)
    for path in nifti_files(src / lab_dir):
        m = re.fullmatch(r"label(\w+)", nifti_stem(path))
        if not m:
            raise UserError(f"{path}: expected a label named labelXXXX.nii.gz")
        _add(labels, m.group(1), path)
    cases = tuple(RawCase(cid, (img,), lab) for cid, img, lab in _pair(images, labels))
    return RawDataset("synapse", SYNAPSE_CLASSES, cases)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: missing (the dataset description is required)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _label_names(data: dict[str, Any], path: Path) -> tuple[str, ...]:
    """Class names by value from a v1 ({"0": "background"}) or v2 ({"background": 0})
    ``labels`` map; values must be 0..K-1 without gaps."""
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise UserError(f"{path}: no 'labels' map")
    by_value: dict[int, str] = {}
    try:
        for key, value in labels.items():
            if isinstance(value, list):
                raise UserError(f"{path}: region-based labels ({key!r}) are not supported")
            if str(key).lstrip("-").isdigit():
                by_value[int(key)] = str(value)
            else:
                by_value[int(value)] = str(key)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: 'labels' values must be integers ({exc})") from exc
    if sorted(by_value) != list(range(len(by_value))):
        raise UserError(f"{path}: label values must be 0..K-1 without gaps, got {sorted(by_value)}")
    names = tuple(re.sub(r"[^a-z0-9]+", "_", by_value[v].lower()).strip("_") or f"class_{v}"
                  for v in range(len(by_value)))
    if len(set(names)) != len(names):
        raise UserError(f"{path}: class names repeat: {names}")
    return names


def discover_amos(src: Path) -> RawDataset:
    """AMOS22 (Ji et al., NeurIPS 2022): labelled training and validation cases."""
    ds_json = src / "dataset.json"
    data = _read_json(ds_json)
    names = _label_names(data, ds_json)
    if len(names) != len(AMOS_CLASSES):
        raise UserError(f"{ds_json}: {len(names)} labels, AMOS has {len(AMOS_CLASSES)}")
    pairs: list[tuple[str, Path, Path]] = []
    seen: dict[str, Path] = {}
    for img_dir, lab_dir in (("imagesTr", "labelsTr"), ("imagesVa", "labelsVa")):
        if (src / img_dir).is_dir() or (src / lab_dir).is_dir():
            if not (src / img_dir).is_dir() or not (src / lab_dir).is_dir():
                raise UserError(f"{src}: {img_dir}/ and {lab_dir}/ must come together")
            images = _by_id(nifti_files(src / img_dir))
            labels = _by_id(nifti_files(src / lab_dir))
            for cid, img, lab in _pair(images, labels):
                _add(seen, cid, img)  # the same id in imagesTr and imagesVa
                pairs.append((cid, img, lab))
    if not pairs:
        raise UserError(f"{src}: no imagesTr/labelsTr (or imagesVa/labelsVa) cases")
    for entry in data.get("training", []) + data.get("validation", []):
        listed = src / str(entry.get("image", "")).lstrip("./") if isinstance(entry, dict) else None
        if listed is not None and not listed.is_file():
            raise UserError(f"{ds_json}: lists {entry.get('image')}, which does not exist")
    cases = []
    for cid, img, lab in pairs:
        if not re.fullmatch(r"amos_(\d+)", cid):
            raise UserError(f"{img}: expected an AMOS case named amos_XXXX.nii.gz")
        cases.append(RawCase(cid, (img,), lab, case_modality("amos", cid)))
    return RawDataset("amos", AMOS_CLASSES, tuple(cases))


def discover_nnunet(src: Path) -> RawDataset:
    """An nnU-Net raw dataset (Isensee et al., Nat. Methods 2021): classes from dataset.json."""
    ds_json = src / "dataset.json"
    data = _read_json(ds_json)
    names = _label_names(data, ds_json)
    channels = data.get("channel_names") or data.get("modality") or {"0": "CT"}
    if not isinstance(channels, dict) or not channels:
        raise UserError(f"{ds_json}: 'channel_names' must map channel index to a name")
    n_channels = len(channels)
    ending = str(data.get("file_ending", ".nii.gz"))
    if ending not in (".nii.gz", ".nii"):
        raise UserError(f"{ds_json}: file_ending {ending!r} is not supported (NIfTI only)")
    for folder in ("imagesTr", "labelsTr"):
        if not (src / folder).is_dir():
            raise UserError(f"{src / folder}: missing")
    labels = _by_id(nifti_files(src / "labelsTr"))
    images: dict[str, Path] = {}
    channel_files: dict[str, list[Path]] = {}
    for path in nifti_files(src / "imagesTr"):
        m = re.fullmatch(r"(.+)_(\d{4})", nifti_stem(path))
        if not m:
            raise UserError(f"{path}: expected <case>_XXXX{ending} (nnU-Net channel suffix)")
        channel_files.setdefault(m.group(1), []).append(path)
        images[m.group(1)] = path
    pairs = _pair(images, labels)
    expected_n = data.get("numTraining")
    if isinstance(expected_n, int) and expected_n != len(pairs):
        raise UserError(f"{ds_json}: numTraining is {expected_n} but {len(pairs)} cases exist")
    cases = []
    for cid, _img, lab in pairs:
        files = sorted(channel_files[cid])
        if len(files) != n_channels:
            raise UserError(f"{files[0]}: case {cid} has {len(files)} channel file(s),"
                            f" dataset.json names {n_channels}")
        cases.append(RawCase(cid, tuple(files), lab, case_modality("nnunet", cid, channels)))
    name = str(data.get("name") or src.name)
    return RawDataset(name, names, tuple(cases), n_channels,
                      {"channel_names": {str(k): str(v) for k, v in channels.items()}})


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
    """Read, validate and resample each case; with ``foreground`` given, collect a sample of
    foreground intensities of the first channel (for the nnU-Net-style CT window)."""
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


def folder_name(dataset: str, profile: str) -> str:
    """``<dataset>-<profile>``: where a prepared dataset lives under the data root."""
    return f"{dataset}-{profile}"


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
    """Import ``src`` (layout ``fmt``) into ``out_root/<dataset>-<profile>``."""
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
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable .npy file ({exc})") from exc


def prepare_dhc_npy(src: Path, out_root: Path, task: str | None,
                    on_progress: Callable[[int, int], None] | None = None) -> PreparedDataset:
    """The reference's preprocessed ``npy/`` + ``splits/`` layout, taken as it is."""
    if task not in ("synapse", "amos"):
        raise UserError("dhc-npy needs --task synapse or --task amos (the class list)")
    classes = SYNAPSE_CLASSES if task == "synapse" else AMOS_CLASSES
    npy = src / "npy"
    if not npy.is_dir():
        raise UserError(f"{npy}: missing (expected npy/<id>_image.npy and npy/<id>_label.npy)")
    images = {p.name[: -len("_image.npy")]: p for p in sorted(npy.glob("*_image.npy"))}
    labels = {p.name[: -len("_label.npy")]: p for p in sorted(npy.glob("*_label.npy"))}
    pairs = _pair(images, labels)
    splits: dict[str, list[str]] = {}
    if (src / "splits").is_dir():
        for path in sorted((src / "splits").glob("*.txt")):
            ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            if path.stem.startswith("labeled") and not ids:
                raise UserError(f"{path}: the labeled list is empty")
            dup = first_duplicate(ids)
            if dup is not None:
                raise UserError(f"{path}: lists an id twice ({dup})")
            missing = sorted(set(ids) - set(images))
            if missing:
                raise UserError(f"{path}: id {missing[0]} is not in {npy}")
            splits[path.stem] = ids
    for a, b in combinations(("eval", "test", "train"), 2):
        common = sorted(set(splits.get(a, [])) & set(splits.get(b, [])))
        if common:
            raise UserError(f"{src / 'splits'}: {a}.txt and {b}.txt share {common[0]}")

    def cases() -> Iterator[PreparedCase]:
        for cid, img_path, lab_path in pairs:
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
            if label.min() < 0 or label.max() >= len(classes):
                raise UserError(f"{lab_path}: label values outside 0..{len(classes) - 1}")
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
