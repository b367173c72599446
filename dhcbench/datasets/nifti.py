"""Reading NIfTI volumes for the importers, with one-line errors that name the file.

nibabel returns arrays in the file's voxel order (i, j, k); the reference (SimpleITK) works
in (z, y, x) = (k, j, i). :func:`read_volume` returns the (z, y, x) array, the spacing in
that order, and the source affine and shape so predictions can be written back onto the
source grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dhcbench.errors import UserError


@dataclass(frozen=True)
class Volume:
    """A volume in (z, y, x) order with the geometry of its source file.

    ``data`` is float32 for an image, uint8 (int32 beyond 256 classes) for a label map;
    ``spacing`` and ``affine`` let a prediction be written back onto the source grid.
    """

    data: np.ndarray  # (D, H, W)
    spacing: tuple[float, float, float]  # mm, (z, y, x)
    affine: np.ndarray  # 4x4, source voxel (i, j, k) -> world
    source_shape: tuple[int, int, int]  # (i, j, k) as stored in the file


def nifti_stem(path: Path) -> str:
    """The file name without ``.nii.gz`` or ``.nii`` (a case id).

    Any other file keeps its name less the last suffix (``Path.stem``).
    """
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def nifti_files(folder: Path) -> list[Path]:
    """The ``.nii.gz`` and ``.nii`` files of a folder, sorted by path.

    Other files are ignored; sub-folders are not searched.
    """
    return sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii")))


def _load(path: Path):  # noqa: ANN202
    import nibabel as nib

    try:
        return nib.load(str(path))
    except FileNotFoundError as exc:
        raise UserError(f"{path}: file not found") from exc
    except Exception as exc:  # nibabel raises many types for broken files
        raise UserError(f"{path}: unreadable NIfTI file ({type(exc).__name__})") from exc


def header_shape(path: Path) -> tuple[int, ...]:
    """The array shape from the header only (cheap pre-check of a whole dataset).

    The shape is in the file's (i, j, k[, t]) order. Raises UserError naming the file when
    it is missing or not NIfTI.
    """
    return tuple(int(s) for s in _load(path).shape)


def require_3d(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    """The 3D shape of a volume, a trailing axis of length 1 dropped.

    Raises:
        UserError: naming ``path`` when the shape is not 3D after that.
    """
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise UserError(f"{path}: expected a 3D volume, got shape {shape}")
    return shape  # type: ignore[return-value]


def read_volume(path: Path, *, label: bool = False, num_classes: int | None = None) -> Volume:
    """Read an image or a label map, transposed to (z, y, x) = (D, H, W).

    An image is float32 and must be finite. A label map must hold integers in
    ``0..num_classes-1``; it is returned as uint8 (int32 with more than 256 classes). A 4D
    file with one volume is taken as 3D. The spacing is in mm, (z, y, x).

    Raises:
        UserError: naming ``path`` for an unreadable file, a shape that is not 3D, NaN or
            infinite intensities, or label values that are not integers or out of range.
    """
    img = _load(path)
    shape = tuple(int(s) for s in img.shape)
    require_3d(shape, path)
    try:
        data = np.asanyarray(img.dataobj) if label else img.get_fdata(dtype=np.float32)
    except Exception as exc:  # truncated gzip streams fail only when the data are read
        raise UserError(f"{path}: unreadable NIfTI data ({type(exc).__name__})") from exc
    if data.ndim == 4:
        data = data[..., 0]
    if label:
        if not np.issubdtype(data.dtype, np.integer):
            if not np.all(np.isfinite(data)) or not np.all(np.mod(data, 1) == 0):
                raise UserError(f"{path}: label values are not integers")
        data = np.asarray(data).astype(np.int64)
        lo, hi = int(data.min()), int(data.max())
        if num_classes is not None and (lo < 0 or hi >= num_classes):
            raise UserError(
                f"{path}: label values {lo}..{hi} outside the class range 0..{num_classes - 1}"
            )
        data = data.astype(np.uint8 if (num_classes or 256) <= 256 else np.int32)
    elif not np.all(np.isfinite(data)):
        raise UserError(f"{path}: image contains NaN or infinite intensities")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return Volume(
        data=np.ascontiguousarray(np.transpose(data, (2, 1, 0))),
        spacing=(zooms[2], zooms[1], zooms[0]),
        affine=np.asarray(img.affine, dtype=np.float64),
        source_shape=shape[:3],  # type: ignore[arg-type]
    )


def write_label_map(path: Path, label_zyx: np.ndarray, affine: np.ndarray) -> None:
    """Write a (z, y, x) label map back in the source's (i, j, k) order with its affine.

    ``label_zyx`` is (D, H, W) class indices; it is stored as uint8 NIfTI with ``affine``
    (4x4, source voxel to world), so the file overlays the source image.
    """
    import nibabel as nib

    data = np.ascontiguousarray(np.transpose(label_zyx, (2, 1, 0))).astype(np.uint8)
    img = nib.Nifti1Image(data, affine)
    img.set_data_dtype(np.uint8)
    nib.save(img, str(path))
