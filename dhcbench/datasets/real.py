"""The real datasets of the paper (Synapse, AMOS) and any nnU-Net dataset.

They are imported once with ``dhcbench prepare`` into ``<data root>/<name>-<profile>`` and then
load exactly like the phantom. The training presets reproduce the reference scripts
(reference §1, §3.3, §9): patch 64×128×128, 32-filter V-Nets, lr 0.03, λ 0.1, evaluation every
10 epochs; Synapse 200 epochs at 10 % and 300 at 20/40 % with patience 100; AMOS 200 epochs
with patience 50.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dhcbench.datasets.base import DATASETS, DatasetSpec, check_options
from dhcbench.datasets.classes import AMOS_CLASSES, SYNAPSE_CLASSES
from dhcbench.datasets.geometry import PROFILES
from dhcbench.datasets.manifests import load_manifest
from dhcbench.datasets.splits import tag_ratio
from dhcbench.datasets.storage import MANIFEST, PreparedDataset, folder_name, load_prepared
from dhcbench.errors import UserError

REFERENCE_PATCH = (64, 128, 128)
CT_WINDOW = (-75.0, 275.0)


def _profile(options: Mapping[str, Any], default: str) -> str:
    """The geometry profile named in ``options`` (``default`` when none), checked."""
    profile = str(options.get("profile", default))
    if profile not in (*PROFILES, "dhcnpy"):
        raise UserError(f"unknown geometry profile {profile!r}"
                        f" (valid: {', '.join((*PROFILES, 'dhcnpy'))})")
    return profile


def _open(root: Path, key: str, profile: str, prepare_hint: str) -> PreparedDataset:
    """The prepared ``<key>-<profile>`` under ``root``, or a UserError saying how to make it."""
    path = Path(root) / folder_name(key, profile)
    if not (path / MANIFEST).is_file():
        raise UserError(f"{path}: not prepared yet; run `dhcbench prepare {prepare_hint}"
                        f" --profile {profile}` first (see the README)")
    return load_prepared(path)


@dataclass(frozen=True)
class PaperDataset:
    """A dataset of the paper (Synapse, AMOS): fixed classes, the reference's CT window.

    Prepared once with ``dhcbench prepare <name>``; ``open`` only reads what that wrote. The
    default split is a shipped manifest of the reference's lists (per geometry profile where
    the reference changed them), and the paper's labeled ratios are those the manifest has
    labeled lists for. Options: ``profile`` only.
    """

    name: str
    class_names: tuple[str, ...]  # background first
    title: str
    description: str
    reference: str
    split: str  # the default split manifest
    epochs: int  # the reference's training length
    patience: int  # its early-stopping patience, in epochs
    #: Geometry profile -> the split manifest used with it instead of ``split``.
    profile_splits: Mapping[str, str] = field(default_factory=dict)
    #: (ratio, epochs): below this labeled ratio the reference trains this many epochs.
    epochs_below: tuple[float, int] | None = None

    @property
    def ratios(self) -> tuple[float, ...]:
        """The paper's labeled ratios: those of the default manifest's labeled lists."""
        return tuple(tag_ratio(tag) for tag in load_manifest(self.split).labeled)

    @property
    def classes_text(self) -> str:
        """The number of foreground classes, for listings."""
        return str(len(self.class_names) - 1)

    def spec(self, options: Mapping[str, Any], patch_size: tuple[int, int, int] | None,
             root: Path | None = None) -> DatasetSpec:
        """The spec: one CT channel clipped to the reference's window (-75, 275) HU.

        Args:
            options: ``profile`` (default ``dhc2023``) is the only option.
            patch_size: the training crop (D, H, W) in voxels; None for the reference's
                64×128×128.
            root: unused (the spec needs no data on disk).
        """
        del root
        check_options(options, {"profile"}, self.name)
        return DatasetSpec(
            name=self.name, class_names=self.class_names, channels=1,
            patch_size=tuple(patch_size) if patch_size else REFERENCE_PATCH,  # type: ignore[arg-type]
            intensity_window=CT_WINDOW, profile=_profile(options, "dhc2023"),
        )

    def open(self, spec: DatasetSpec, options: Mapping[str, Any], root: Path,
             on_progress: Callable[[int, int], None] | None = None) -> PreparedDataset:
        """The dataset prepared under ``root`` in the profile of ``spec``.

        Raises:
            UserError: when it has not been prepared, with the command that prepares it.
        """
        del options, on_progress
        return _open(root, self.name, spec.profile, f"{self.name} --src <download folder>")

    def default_split(self, options: Mapping[str, Any]) -> str:
        """The manifest for the geometry profile in ``options``."""
        return self.profile_splits.get(str(options.get("profile")), self.split)

    def preset(self, ratio: float) -> dict[str, Any]:
        """The reference's training length and patience at this labeled ratio."""
        epochs = self.epochs
        if self.epochs_below is not None and ratio < self.epochs_below[0]:
            epochs = self.epochs_below[1]
        return {"train": {"epochs": epochs, "patience": self.patience}}


SYNAPSE = PaperDataset(
    name="synapse",
    class_names=SYNAPSE_CLASSES,
    title="Synapse multi-organ CT (BTCV abdomen)",
    description=("30 abdominal CT scans, 13 organs; reference splits synapse:dhc2023"
                 " (20/4/6) and synapse:dhc2024 (its test list)"),
    reference="Landman et al., MICCAI 2015 Multi-Atlas Labeling Beyond the Cranial Vault",
    split="synapse:dhc2023",
    profile_splits={"dhc2024": "synapse:dhc2024"},
    epochs=300,
    patience=100,
    epochs_below=(0.15, 200),
)
AMOS = PaperDataset(
    name="amos",
    class_names=AMOS_CLASSES,
    title="AMOS22 abdominal multi-organ CT and MRI",
    description=("360 labelled scans (240 train+val, 120 val), 15 organs; reference split"
                 " amos:dhc (216/24/120, labeled 2/5/10 %)"),
    reference="Ji et al., AMOS, NeurIPS 2022 Datasets and Benchmarks",
    split="amos:dhc",
    epochs=200,
    patience=50,
)


class NnunetSource:
    """Any nnU-Net raw dataset, prepared with ``dhcbench prepare nnunet``.

    Pick it with ``--dataset nnunet:<name>`` (or ``--set data.options.name=<name>``). Its
    classes, channels and intensity window come from the prepared manifest, so the spec
    needs the data to be prepared.
    """

    name = "nnunet"
    title = "Any nnU-Net raw dataset"
    description = ("your own data in nnU-Net's raw layout; classes from its dataset.json;"
                   " seeded 1/5 test, 1/6 eval split")
    reference = "Isensee et al., nnU-Net, Nature Methods 2021 (data format)"
    ratios = (0.1, 0.2, 0.4)
    classes_text = "from dataset.json"

    def _prepared(self, options: Mapping[str, Any], root: Path | None) -> PreparedDataset:
        check_options(options, {"name", "profile"}, "nnunet")
        name = options.get("name")
        if not name:
            raise UserError("--dataset nnunet needs the prepared dataset's name:"
                            " --dataset nnunet:<name> (see `dhcbench prepare nnunet`)")
        from dhcbench.datasets.base import data_root

        key = str(name) if str(name).startswith("nnunet-") else f"nnunet-{name}"
        return _open(root or data_root(), key, _profile(options, "native"),
                     "nnunet --src <Dataset folder>")

    def spec(self, options: Mapping[str, Any], patch_size: tuple[int, int, int] | None,
             root: Path | None = None) -> DatasetSpec:
        """The spec of the prepared dataset named in ``options``.

        Without ``patch_size``, the crop (D, H, W) is the reference's 64×128×128 shrunk to
        fit the smallest case (a multiple of 16 voxels, at least 16 per axis); the intensity
        window is the one measured at preparation (all-CT datasets), else the reference's
        CT window.

        Args:
            options: ``name`` (required) and ``profile`` (default ``native``).
            patch_size: the training crop in voxels, or None.
            root: the data root (default :func:`data_root`).
        """
        ds = self._prepared(options, root)
        if patch_size is None:
            smallest = [min(rec.shape[-3:][a] for rec in ds.cases.values()) for a in range(3)]
            patch_size = tuple(max(16, min(p, s // 16 * 16))  # type: ignore[assignment]
                               for p, s in zip(REFERENCE_PATCH, smallest, strict=True))
        window = ds.meta.get("intensity_window")
        return DatasetSpec(
            name=ds.name, class_names=ds.class_names, channels=int(ds.meta.get("channels", 1)),
            patch_size=tuple(patch_size),  # type: ignore[arg-type]
            intensity_window=tuple(window) if window else CT_WINDOW,  # type: ignore[arg-type]
            profile=ds.profile,
        )

    def open(self, spec: DatasetSpec, options: Mapping[str, Any], root: Path,
             on_progress: Callable[[int, int], None] | None = None) -> PreparedDataset:
        """The prepared dataset named in ``options`` (nnU-Net data is never generated)."""
        del spec, on_progress
        return self._prepared(options, root)

    def default_split(self, options: Mapping[str, Any]) -> None:
        """None: the seeded generator draws the split (1/5 test, 1/6 of the rest eval)."""
        del options
        return None

    def preset(self, ratio: float) -> dict[str, Any]:
        """Synapse's longer schedule (300 epochs, patience 100) at every labeled ratio."""
        del ratio
        return {"train": {"epochs": 300, "patience": 100}}


DATASETS.add("synapse", SYNAPSE)
DATASETS.add("amos", AMOS)
DATASETS.add("nnunet", NnunetSource())
