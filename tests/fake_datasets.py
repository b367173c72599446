"""Tiny fake raw datasets in the layouts ``dhcbench prepare`` reads, built from phantom cases.

Phantom arrays are (z, y, x); NIfTI files are written in (x, y, z) order with a diagonal
affine whose zooms are the spacing in (x, y, z), as scanners store them. A few phantom
cases are generated once and reused cyclically, so hundreds of fake cases cost little.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from dhcbench.datasets.classes import AMOS_CLASSES
from dhcbench.datasets.phantom import PhantomConfig, generate_case

SIZE = (12, 24, 24)  # (D, H, W) of the fake volumes
SPACING = (2.5, 0.8, 0.8)  # mm, (z, y, x)
N_PHANTOM = 6  # distinct phantom cases, reused cyclically


@lru_cache(maxsize=4)
def phantom_cases(size: tuple[int, int, int] = SIZE, n: int = N_PHANTOM
                  ) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``n`` phantom (image int16-valued float32, label uint8) pairs of ``size``, (z, y, x)."""
    cfg = PhantomConfig(volume_size=size, num_cases=n)
    out = []
    for i in range(n):
        image, label = generate_case(cfg, i)
        out.append((np.round(image).astype(np.int16).astype(np.float32), label))
    return tuple(out)


def case(k: int, size: tuple[int, int, int] = SIZE) -> tuple[np.ndarray, np.ndarray]:
    cases = phantom_cases(size)
    return cases[k % len(cases)]


def write_nifti(path: Path, zyx: np.ndarray, dtype: type = np.int16,
                spacing: Sequence[float] = SPACING) -> None:
    """Write a (z, y, x) array — or an array already in file order when not 3D — as NIfTI."""
    import nibabel as nib

    data = np.transpose(zyx, (2, 1, 0)) if zyx.ndim == 3 else zyx
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(data).astype(dtype), affine)
    img.set_data_dtype(dtype)
    nib.save(img, str(path))


def reference_ids(folder: str, names: Iterable[str] | None = None) -> list[str]:
    """Sorted union of the ids in the shipped split lists ``dhcbench/data/splits/<folder>``."""
    base = resources.files("dhcbench.data").joinpath("splits", folder)
    ids: set[str] = set()
    for entry in base.iterdir():
        if entry.name.endswith(".txt") and (names is None or entry.name[:-4] in names):
            ids.update(entry.read_text().split())
    return sorted(ids)


def reference_list(folder: str, name: str) -> list[str]:
    return sorted(resources.files("dhcbench.data").joinpath(
        "splits", folder, f"{name}.txt").read_text().split())


def make_synapse(src: Path, ids: Sequence[str], variant: str = "img",
                 size: tuple[int, int, int] = SIZE) -> Path:
    """``img/imgXXXX.nii.gz`` + ``label/labelXXXX.nii.gz`` (or ``imagesTr``/``labelsTr``)."""
    img_dir, lab_dir = {"img": ("img", "label"), "imagesTr": ("imagesTr", "labelsTr")}[variant]
    (src / img_dir).mkdir(parents=True)
    (src / lab_dir).mkdir(parents=True)
    for k, cid in enumerate(ids):
        image, label = case(k, size)
        write_nifti(src / img_dir / f"img{cid}.nii.gz", image, np.int16)
        write_nifti(src / lab_dir / f"label{cid}.nii.gz", label, np.uint8)
    return src


def amos_json(training: Sequence[str], validation: Sequence[str]) -> dict:
    """An AMOS22-style dataset.json (v1 label map, 15 organs)."""
    def entries(ids: Sequence[str], sub: str) -> list[dict[str, str]]:
        return [{"image": f"./images{sub}/{c}.nii.gz", "label": f"./labels{sub}/{c}.nii.gz"}
                for c in ids]

    names = ["background", "spleen", "right kidney", "left kidney", "gall bladder",
             "esophagus", "liver", "stomach", "aorta", "postcava", "pancreas",
             "right adrenal gland", "left adrenal gland", "duodenum", "bladder",
             "prostate/uterus"]
    assert len(names) == len(AMOS_CLASSES)
    return {"name": "AMOS", "tensorImageSize": "3D", "modality": {"0": "CT"},
            "labels": {str(i): n for i, n in enumerate(names)},
            "numTraining": len(training), "numValidation": len(validation),
            "training": entries(training, "Tr"), "validation": entries(validation, "Va")}


def make_amos(src: Path, training: Sequence[str], validation: Sequence[str],
              size: tuple[int, int, int] = SIZE) -> Path:
    """``imagesTr``/``labelsTr``/``imagesVa``/``labelsVa`` + ``dataset.json``."""
    for sub in ("imagesTr", "labelsTr", "imagesVa", "labelsVa"):
        (src / sub).mkdir(parents=True)
    k = 0
    for sub, ids in (("Tr", training), ("Va", validation)):
        for cid in ids:
            image, label = case(k, size)
            k += 1
            write_nifti(src / f"images{sub}" / f"{cid}.nii.gz", image, np.int16)
            write_nifti(src / f"labels{sub}" / f"{cid}.nii.gz", label, np.uint8)
    (src / "dataset.json").write_text(json.dumps(amos_json(training, validation)))
    return src


NNUNET_V2 = {"name": "Dataset042_ToyOrgans", "channel_names": {"0": "CT"},
             "labels": {"background": 0, "Liver": 1, "Spleen (whole)": 2},
             "file_ending": ".nii.gz"}
NNUNET_V1 = {"name": "Task09_Spleen", "tensorImageSize": "3D", "modality": {"0": "MRI"},
             "labels": {"0": "background", "1": "spleen"}}


def nnunet_label(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Phantom labels mapped to a toy class list: liver -> 1, spleen -> 2 (if K = 3)."""
    if num_classes == 2:
        return (label == 1).astype(np.uint8)  # spleen only
    return np.where(label == 6, 1, np.where(label == 1, 2, 0)).astype(np.uint8)


def make_nnunet(src: Path, n: int, style: str = "v2",
                size: tuple[int, int, int] = SIZE) -> Path:
    """An nnU-Net raw dataset: ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``."""
    meta = dict(NNUNET_V2 if style == "v2" else NNUNET_V1)
    k = len(meta["labels"])
    prefix = "toy" if style == "v2" else "spleen"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir(parents=True)
    ids = [f"{prefix}_{i:03d}" for i in range(n)]
    for j, cid in enumerate(ids):
        image, label = case(j, size)
        write_nifti(src / "imagesTr" / f"{cid}_0000.nii.gz", image, np.int16)
        write_nifti(src / "labelsTr" / f"{cid}.nii.gz", nnunet_label(label, k), np.uint8)
    meta["numTraining"] = n
    if style == "v1":
        meta["training"] = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                            for c in ids]
    (src / "dataset.json").write_text(json.dumps(meta))
    return src


def make_dhc_npy(src: Path, ids: Sequence[str], splits: dict[str, Sequence[str]],
                 size: tuple[int, int, int] = SIZE) -> Path:
    """The reference's preprocessed layout: ``npy/<id>_{image,label}.npy`` + ``splits/``."""
    (src / "npy").mkdir(parents=True)
    (src / "splits").mkdir()
    for k, cid in enumerate(ids):
        image, label = case(k, size)
        np.save(src / "npy" / f"{cid}_image.npy", image.astype(np.float32))
        np.save(src / "npy" / f"{cid}_label.npy", label.astype(np.float32))  # as the reference
    for name, listed in splits.items():
        (src / "splits" / f"{name}.txt").write_text("".join(f"{i}\n" for i in listed))
    return src


def listing(folder: Path) -> list[str] | None:
    """Every path under ``folder`` (relative, sorted); None when it does not exist."""
    if not folder.exists():
        return None
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
