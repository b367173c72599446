"""The layouts a ``dataset.json`` describes: AMOS22 and any nnU-Net raw dataset.

Both name their classes in a ``labels`` map (nnU-Net v1 ``{"0": "background"}`` or v2
``{"background": 0}``) and keep images and labels in ``imagesTr``/``labelsTr``. Discovery
reads the description and the file names only; no volume is opened here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dhcbench.datasets.classes import AMOS_CLASSES
from dhcbench.datasets.intensity import case_modality
from dhcbench.datasets.nifti import nifti_files, nifti_stem
from dhcbench.datasets.raw_layouts import (
    RawCase,
    RawDataset,
    add_case_file,
    files_by_case_id,
    pair_cases,
)
from dhcbench.errors import UserError


def read_dataset_json(path: Path) -> dict[str, Any]:
    """The parsed ``dataset.json`` at ``path``, which must hold a JSON object.

    Raises:
        UserError: when the file is missing, unreadable, not JSON or not an object.
    """
    if not path.is_file():
        raise UserError(f"{path}: missing (the dataset description is required)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def label_names(data: dict[str, Any], path: Path) -> tuple[str, ...]:
    """Class names by label value from the ``labels`` map of a dataset description.

    Accepts a v1 ({"0": "background"}) or v2 ({"background": 0}) map; the values must be
    0..K-1 without gaps. Names become lowercase snake keys (``"Right Kidney"`` ->
    ``right_kidney``; ``class_<value>`` for a name with no letter or digit).

    Args:
        data: the parsed ``dataset.json``.
        path: its file, named in errors.

    Returns:
        K names, the one of label value 0 (background) first.

    Raises:
        UserError: for a missing map, region-based or non-integer labels, gaps in the
            values or names that repeat.
    """
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
    """AMOS22 (Ji et al., NeurIPS 2022): its labelled training and validation cases.

    Reads ``dataset.json`` (15 organs) and the pairs of ``imagesTr``/``labelsTr`` and
    ``imagesVa``/``labelsVa`` (``amos_XXXX.nii.gz``); the classes are AMOS's fixed list and
    cases with XXXX >= 500 are MRI.

    Raises:
        UserError: for a description that does not match AMOS, half a folder pair, a case id
            in both pairs, a listed image that does not exist or a misnamed case.
    """
    ds_json = src / "dataset.json"
    data = read_dataset_json(ds_json)
    names = label_names(data, ds_json)
    if len(names) != len(AMOS_CLASSES):
        raise UserError(f"{ds_json}: {len(names)} labels, AMOS has {len(AMOS_CLASSES)}")
    pairs: list[tuple[str, Path, Path]] = []
    seen: dict[str, Path] = {}
    for img_dir, lab_dir in (("imagesTr", "labelsTr"), ("imagesVa", "labelsVa")):
        if (src / img_dir).is_dir() or (src / lab_dir).is_dir():
            if not (src / img_dir).is_dir() or not (src / lab_dir).is_dir():
                raise UserError(f"{src}: {img_dir}/ and {lab_dir}/ must come together")
            images = files_by_case_id(nifti_files(src / img_dir))
            labels = files_by_case_id(nifti_files(src / lab_dir))
            for cid, img, lab in pair_cases(images, labels):
                add_case_file(seen, cid, img)  # the same id in imagesTr and imagesVa
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


def _channel_files(folder: Path, ending: str) -> dict[str, list[Path]]:
    """nnU-Net image files ``<case>_XXXX<ending>`` grouped by case, in folder order."""
    channel_files: dict[str, list[Path]] = {}
    for path in nifti_files(folder):
        m = re.fullmatch(r"(.+)_(\d{4})", nifti_stem(path))
        if not m:
            raise UserError(f"{path}: expected <case>_XXXX{ending} (nnU-Net channel suffix)")
        channel_files.setdefault(m.group(1), []).append(path)
    return channel_files


def discover_nnunet(src: Path) -> RawDataset:
    """An nnU-Net raw dataset (Isensee et al., Nat. Methods 2021): classes from dataset.json.

    Reads ``dataset.json`` (``labels``, ``channel_names`` or v1 ``modality``,
    ``file_ending``, ``numTraining``, ``name``), ``imagesTr/<case>_XXXX.nii.gz`` (one file
    per channel) and ``labelsTr/<case>.nii.gz``. A case is CT when its first channel is
    named CT (or no channel is named), MR otherwise; the dataset is named by ``name``, else
    by the folder.

    Raises:
        UserError: for a bad description, a missing folder, a misnamed file, a case count
            other than ``numTraining`` or a case with the wrong number of channel files.
    """
    ds_json = src / "dataset.json"
    data = read_dataset_json(ds_json)
    names = label_names(data, ds_json)
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
    labels = files_by_case_id(nifti_files(src / "labelsTr"))
    channel_files = _channel_files(src / "imagesTr", ending)
    pairs = pair_cases({cid: files[-1] for cid, files in channel_files.items()}, labels)
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
