"""Turning a prepared dataset into training batches and evaluation inputs.

Follows the reference pipeline (reference §2.3, §3): each volume is clipped to the intensity
window and min-max normalised **once**, when it is loaded into memory, not per iteration;
training patches are uniform random crops (no foreground bias) with optional H/W flips;
one epoch zips the unlabeled list with the labeled list repeated to the same length, both
shuffled, so it has ceil(N_unlabeled / batch) iterations. Unlabeled cases are loaded without
their label files. All randomness comes from one ``numpy.random.Generator`` whose state is
checkpointed, so a resumed run draws the same patches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dhcbench.datasets.base import DatasetSpec
from dhcbench.datasets.intensity import normalise_image
from dhcbench.datasets.storage import PreparedDataset
from dhcbench.interfaces import Batch

Shape3 = tuple[int, int, int]


def normalised_image(ds: PreparedDataset, spec: DatasetSpec, case_id: str) -> np.ndarray:
    """A prepared case's image, normalised by :func:`normalise_image`.

    Returns float32 (D, H, W), or (C, D, H, W) for multi-channel data, in the network's
    input range (mostly [0, 1]; z-scored channels are unbounded).
    """
    return normalise_image(ds.image(case_id), ds.cases[case_id].modality,
                           spec.intensity_window, ds.meta)


def pad_to_patch(volume: np.ndarray, patch: Shape3) -> np.ndarray:
    """Zero-pad the spatial axes (the last three) that are not larger than the patch.

    Such an axis gets (patch - size) // 2 + 3 voxels on each side, as the reference's
    RandomCrop does, so a crop fits; leading (channel) axes are not padded. A volume that
    needs no padding is returned as it is.
    """
    pads = [(0, 0)] * (volume.ndim - 3)
    for size, p in zip(volume.shape[-3:], patch, strict=True):
        w = (p - size) // 2 + 3 if size <= p else 0
        pads.append((w, w))
    if not any(w for w, _ in pads):
        return volume
    return np.pad(volume, pads, mode="constant")


def centre_crop_slices(shape: Sequence[int], patch: Shape3) -> tuple[slice, slice, slice]:
    """Slices (D, H, W) of the centred patch, as the reference's CenterCrop.

    The offset per axis is round((size - patch) / 2), at least 0; pad with
    :func:`pad_to_patch` first so that every axis is at least the patch size.
    """
    out = []
    for size, p in zip(shape, patch, strict=True):
        start = max(0, int(round((size - p) / 2)))
        out.append(slice(start, start + p))
    return tuple(out)  # type: ignore[return-value]


def epoch_iterations(mode: str, n_labeled: int, n_unlabeled: int, batch_labeled: int,
                     batch_unlabeled: int) -> int:
    """Iterations of one epoch of a :class:`PatchSampler` in data mode ``mode``.

    ``all``: ceil(N_labeled / batch_labeled). Otherwise the unlabeled list sets the length:
    min(ceil(N_unlabeled / batch_unlabeled), ceil(N_unlabeled / batch_labeled)).
    """
    if mode == "all":
        return -(-n_labeled // batch_labeled)
    return min(-(-n_unlabeled // batch_unlabeled), -(-n_unlabeled // batch_labeled))


class PatchSampler:
    """Labeled + unlabeled patch batches for the semi-supervised training loop.

    Holds the normalised training volumes in memory (labeled: image and label; unlabeled:
    image only). ``rng`` draws the epoch's shuffles, the crop offsets and the flips.

    ``mode``: ``semi`` (labeled + unlabeled batches), ``labeled`` (the same schedule, but
    the unlabeled images are neither loaded nor batched: a supervised lower bound) or ``all``
    (every case in ``labeled`` once per epoch in batches of ``batch_labeled``, the reference's
    fully supervised loader).
    """

    def __init__(
        self,
        ds: PreparedDataset,
        spec: DatasetSpec,
        labeled: Sequence[str],
        unlabeled: Sequence[str],
        *,
        batch_labeled: int,
        batch_unlabeled: int,
        flip: bool,
        seed: int,
        mode: str = "semi",
    ) -> None:
        if mode not in ("semi", "labeled", "all"):
            raise ValueError(f"unknown sampler mode {mode!r}")
        self.mode = mode
        self.patch = spec.patch_size
        self.flip = flip
        self.batch_labeled = batch_labeled
        self.batch_unlabeled = batch_unlabeled
        self.labeled_ids = list(labeled)
        self.unlabeled_ids = list(unlabeled)
        self.rng = np.random.default_rng([seed, 2023])
        self.images_l = [pad_to_patch(normalised_image(ds, spec, c), self.patch)
                         for c in self.labeled_ids]
        self.labels_l = [pad_to_patch(np.asarray(ds.label(c)), self.patch)
                         for c in self.labeled_ids]
        # Unlabeled cases: the image only; their label files are never opened.
        self.images_u = [pad_to_patch(normalised_image(ds, spec, c), self.patch)
                         for c in self.unlabeled_ids] if mode == "semi" else []

    def iterations_per_epoch(self) -> int:
        """Iterations of one epoch (:func:`epoch_iterations`)."""
        return epoch_iterations(self.mode, len(self.labeled_ids), len(self.unlabeled_ids),
                                self.batch_labeled, self.batch_unlabeled)

    def plan_epoch(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(labeled indices, unlabeled indices) per iteration of one epoch.

        The labeled dataset is repeated to the unlabeled length (reference §3.3): a
        permutation of range(N_u) taken modulo N_l.
        """
        n_u, n_l = len(self.unlabeled_ids), len(self.labeled_ids)
        if self.mode == "all":
            order = self.rng.permutation(n_l)
            b = self.batch_labeled
            return [(order[i * b:(i + 1) * b], order[:0])
                    for i in range(self.iterations_per_epoch())]
        unl = self.rng.permutation(n_u)
        lab = self.rng.permutation(n_u) % n_l
        bl, bu = self.batch_labeled, self.batch_unlabeled
        return [
            (lab[i * bl:(i + 1) * bl], unl[i * bu:(i + 1) * bu])
            for i in range(self.iterations_per_epoch())
        ]

    def _crop(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The same random patch of every array, then the same random flips.

        Spatial axes are last; images may carry a leading channel axis.
        """
        shape = arrays[0].shape[-3:]
        offsets = [int(self.rng.integers(0, size - p)) if size > p else 0
                   for size, p in zip(shape, self.patch, strict=True)]
        sl = tuple(slice(o, o + p) for o, p in zip(offsets, self.patch, strict=True))
        out = [a[(Ellipsis, *sl)] for a in arrays]
        if self.flip:
            # Reference RandomFlip_LR / RandomFlip_UD: axis H and axis W, p = 0.5 each.
            draws = self.rng.random(2)
            for axis, u in zip((-2, -1), draws, strict=True):
                if u < 0.5:
                    out = [np.flip(a, axis=axis) for a in out]
        return [np.ascontiguousarray(a) for a in out]

    @staticmethod
    def _stack(images: list[np.ndarray]) -> torch.Tensor:
        """(B, C, D, H, W) from single-channel (D, H, W) or multi-channel (C, D, H, W)."""
        batch = torch.from_numpy(np.stack(images))
        return batch[:, None] if batch.ndim == 4 else batch

    def batch(self, lab_idx: np.ndarray, unl_idx: np.ndarray) -> Batch:
        """Crop the patches of one iteration into a ``Batch`` of CPU tensors.

        ``image_l``/``image_u`` are float32 (B, C, D, H, W) with (D, H, W) the patch size,
        ``label_l`` int64 (B, D, H, W); outside ``semi`` mode ``image_u`` is empty (B = 0).
        """
        imgs_l, labs_l = [], []
        for i in lab_idx:
            img, lab = self._crop([self.images_l[i], self.labels_l[i]])
            imgs_l.append(img)
            labs_l.append(lab)
        image_l = self._stack(imgs_l)
        if self.mode == "semi":
            imgs_u = [self._crop([self.images_u[i]])[0] for i in unl_idx]
            image_u = self._stack(imgs_u)
        else:
            image_u = image_l[:0]
        return Batch(
            image_l=image_l,
            label_l=torch.from_numpy(np.stack(labs_l).astype(np.int64)),
            image_u=image_u,
        )

    def get_state(self) -> dict:
        """The random generator's state, for a checkpoint (a JSON-serialisable dict)."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        """Restore the random generator from :meth:`get_state`, so a resumed run continues."""
        self.rng.bit_generator.state = state


@dataclass(frozen=True)
class EvalCase:
    """A normalised volume with its label (and the manifest's geometry).

    The spacing is the prepared grid's, in mm (z, y, x), for surface distances.
    """

    case_id: str
    image: np.ndarray  # float32 (D, H, W) or (C, D, H, W), normalised
    label: np.ndarray  # uint8 (D, H, W)
    spacing: tuple[float, float, float]


def load_case(ds: PreparedDataset, spec: DatasetSpec, case_id: str) -> EvalCase:
    """One whole case, normalised as in training, with its uint8 (D, H, W) label map."""
    return EvalCase(
        case_id=case_id,
        image=normalised_image(ds, spec, case_id),
        label=np.asarray(ds.label(case_id)),
        spacing=ds.cases[case_id].spacing,
    )


def iter_cases(ds: PreparedDataset, spec: DatasetSpec, ids: Sequence[str]) -> Iterator[EvalCase]:
    """Cases one at a time, as :func:`load_case` reads them.

    A generator, so test volumes are never all held in memory.
    """
    for case_id in ids:
        yield load_case(ds, spec, case_id)


def centre_crops(ds: PreparedDataset, spec: DatasetSpec, ids: Sequence[str]
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The in-training validation input: one centred patch per eval case (reference §3.2).

    Returns ``((1, C, D, H, W) float32, (1, D, H, W) int64)`` pairs, preloaded, with
    (D, H, W) the patch size (volumes smaller than the patch are zero-padded first).
    """
    out = []
    for case in iter_cases(ds, spec, ids):
        img = pad_to_patch(case.image, spec.patch_size)
        lab = pad_to_patch(case.label, spec.patch_size)
        sl = centre_crop_slices(lab.shape, spec.patch_size)
        patch = torch.from_numpy(np.ascontiguousarray(img[(Ellipsis, *sl)]))
        out.append((
            patch[None, None] if patch.ndim == 3 else patch[None],
            torch.from_numpy(np.ascontiguousarray(lab[sl]).astype(np.int64))[None],
        ))
    return out
