"""The real datasets of the paper (Synapse, AMOS) and any nnU-Net dataset.

They are imported once with ``dhcbench prepare`` into ``<data root>/<name>-<profile>`` and then
load exactly like the phantom. The training presets reproduce the reference scripts
(reference §1, §3.3, §9): patch 64×128×128, 32-filter V-Nets, lr 0.03, λ 0.1, evaluation every
10 epochs; Synapse 200 epochs at 10 % and 300 at 20/40 % with patience 100; AMOS 200 epochs
with patience 50.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dhcbench.datasets.base import DATASETS, DatasetSpec
from dhcbench.datasets.classes import AMOS_CLASSES, SYNAPSE_CLASSES
from dhcbench.datasets.geometry import PROFILES
from dhcbench.datasets.importers import folder_name
from dhcbench.datasets.storage import MANIFEST, PreparedDataset, load_prepared
from dhcbench.errors import UserError

REFERENCE_PATCH = (64, 128, 128)
CT_WINDOW = (-75.0, 275.0)


def _options(options: Mapping[str, Any], valid: set[str], dataset: str) -> None:
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UserError(
            f"unknown {dataset} option {unknown[0]!r} (valid: {', '.join(sorted(valid))})"
        )


def _profile(options: Mapping[str, Any], default: str) -> str:
    profile = str(options.get("profile", default))
    if profile not in (*PROFILES, "dhcnpy"):
        raise UserError(f"unknown geometry profile {profile!r}"
                        f" (valid: {', '.join((*PROFILES, 'dhcnpy'))})")
    return profile


def _open(root: Path, key: str, profile: str, prepare_hint: str) -> PreparedDataset:
    path = Path(root) / folder_name(key, profile)
    if not (path / MANIFEST).is_file():
        raise UserError(f"{path}: not prepared yet; run `dhcbench prepare {prepare_hint}"
                        f" --profile {profile}` first (see the README)")
    return load_prepared(path)


class _PaperDataset:
    """Synapse and AMOS: fixed classes, the reference's CT window and split manifests."""

    name: str
    class_names: tuple[str, ...]
    title: str
    description: str
    reference: str
    ratios: tuple[float, ...]
    classes_text: str

    def spec(self, options: Mapping[str, Any], patch_size: tuple[int, int, int] | None,
             root: Path | None = None) -> DatasetSpec:
        del root
        _options(options, {"profile"}, self.name)
        return DatasetSpec(
            name=self.name, class_names=self.class_names, channels=1,
            patch_size=tuple(patch_size) if patch_size else REFERENCE_PATCH,  # type: ignore[arg-type]
            intensity_window=CT_WINDOW, profile=_profile(options, "dhc2023"),
        )

    def open(self, spec: DatasetSpec, options: Mapping[str, Any], root: Path,
             on_progress: Callable[[int, int], None] | None = None) -> PreparedDataset:
        del options, on_progress
        return _open(root, self.name, spec.profile, f"{self.name} --src <download folder>")


class SynapseSource(_PaperDataset):
    name = "synapse"
    class_names = SYNAPSE_CLASSES
    title = "Synapse multi-organ CT (BTCV abdomen)"
    description = ("30 abdominal CT scans, 13 organs; reference splits synapse:dhc2023"
                   " (20/4/6) and synapse:dhc2024 (its test list)")
    reference = "Landman et al., MICCAI 2015 Multi-Atlas Labeling Beyond the Cranial Vault"
    ratios = (0.1, 0.2, 0.4)
    classes_text = "13"

    def default_split(self, options: Mapping[str, Any]) -> str:
        return "synapse:dhc2024" if options.get("profile") == "dhc2024" else "synapse:dhc2023"

    def preset(self, ratio: float) -> dict[str, Any]:
        return {"train": {"epochs": 200 if ratio < 0.15 else 300, "patience": 100}}


class AmosSource(_PaperDataset):
    name = "amos"
    class_names = AMOS_CLASSES
    title = "AMOS22 abdominal multi-organ CT and MRI"
    description = ("360 labelled scans (240 train+val, 120 val), 15 organs; reference split"
                   " amos:dhc (216/24/120, labeled 2/5/10 %)")
    reference = "Ji et al., AMOS, NeurIPS 2022 Datasets and Benchmarks"
    ratios = (0.02, 0.05, 0.1)
    classes_text = "15"

    def default_split(self, options: Mapping[str, Any]) -> str:
        del options
        return "amos:dhc"

    def preset(self, ratio: float) -> dict[str, Any]:
        del ratio
        return {"train": {"epochs": 200, "patience": 50}}


class NnunetSource:
    """Any nnU-Net raw dataset, prepared with ``dhcbench prepare nnunet``; pick it with
    ``--dataset nnunet:<name>`` (or ``--set data.options.name=<name>``)."""

    name = "nnunet"
    title = "Any nnU-Net raw dataset"
    description = ("your own data in nnU-Net's raw layout; classes from its dataset.json;"
                   " seeded 1/5 test, 1/6 eval split")
    reference = "Isensee et al., nnU-Net, Nature Methods 2021 (data format)"
    ratios = (0.1, 0.2, 0.4)
    classes_text = "from dataset.json"

    def _prepared(self, options: Mapping[str, Any], root: Path | None) -> PreparedDataset:
        _options(options, {"name", "profile"}, "nnunet")
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
        del spec, on_progress
        return self._prepared(options, root)

    def default_split(self, options: Mapping[str, Any]) -> None:
        del options
        return None

    def preset(self, ratio: float) -> dict[str, Any]:
        del ratio
        return {"train": {"epochs": 300, "patience": 100}}


DATASETS.add("synapse", SynapseSource())
DATASETS.add("amos", AmosSource())
DATASETS.add("nnunet", NnunetSource())
