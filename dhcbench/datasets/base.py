"""Dataset specifications and the dataset registry.

A :class:`DatasetSpec` says what a dataset is (classes, channels, patch size, intensity
window, geometry profile); a registered :class:`DatasetSource` knows how to build that spec
from options, how to get the prepared data on disk (the phantom generates it, real datasets
are imported by ``dhcbench prepare``) and which training preset reproduces the reference
settings for a labeled ratio.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dhcbench.datasets.storage import PreparedDataset
from dhcbench.errors import UserError
from dhcbench.registry import Registry

#: Environment variable naming the prepared-data cache folder.
DATA_ENV = "DHCBENCH_DATA"
DEFAULT_DATA_DIR = "dhcbench-data"


def data_root(explicit: str | None = None) -> Path:
    """The prepared-data cache folder.

    ``explicit``, else ``$DHCBENCH_DATA``, else ``./dhcbench-data`` (relative to the working
    directory); the folder need not exist yet.
    """
    return Path(explicit or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)


def check_options(options: Mapping[str, Any], valid: set[str], dataset: str) -> None:
    """Refuse a ``data.options`` key that ``dataset`` does not know, naming the valid ones.

    Raises:
        UserError: ``unknown <dataset> option '<key>' (valid: ...)`` for the first unknown
            key in sorted order.
    """
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UserError(
            f"unknown {dataset} option {unknown[0]!r} (valid: {', '.join(sorted(valid))})"
        )


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is, independent of where its files are.

    ``class_names`` start with background; ``patch_size`` (D, H, W) is the training crop;
    ``intensity_window`` (low, high) is clipped before the per-volume min-max normalisation of
    reference §2.3 (None: min-max only); ``profile`` names the geometry the volumes were
    prepared in.
    """

    name: str
    class_names: tuple[str, ...]
    channels: int
    patch_size: tuple[int, int, int]
    intensity_window: tuple[float, float] | None
    profile: str

    @property
    def num_classes(self) -> int:
        """K, the number of classes, background included (the networks' output channels)."""
        return len(self.class_names)


class DatasetSource(Protocol):
    """A registered dataset: how to describe it, get its data and train on it.

    The attributes are what ``dhcbench datasets`` lists; the methods are called with the
    run's ``data.options`` (a mapping of dataset-specific keys, checked by the source).
    """

    name: str
    title: str
    description: str
    reference: str
    ratios: tuple[float, ...]  # the labeled ratios of the paper for this dataset
    classes_text: str  # how many foreground classes, for listings

    def spec(self, options: Mapping[str, Any], patch_size: tuple[int, int, int] | None,
             root: Path | None = None) -> DatasetSpec:
        """The dataset's spec for these options.

        Args:
            options: the dataset's options; unknown keys raise UserError.
            patch_size: the training crop (D, H, W) in voxels, or None for the dataset's.
            root: the data root, for datasets whose spec is read from the prepared data.
        """
        ...

    def open(self, spec: DatasetSpec, options: Mapping[str, Any], root: Path,
             on_progress: Callable[[int, int], None] | None = None) -> PreparedDataset:
        """The prepared data under ``root``, generated first where the source can.

        ``on_progress`` is called with (cases done, cases in all) while data is generated.
        Raises UserError when the data is missing and cannot be generated.
        """
        ...

    def preset(self, ratio: float) -> dict[str, Any]:
        """Configuration overrides that reproduce the reference's training at ``ratio``.

        A nested mapping merged into the run configuration, e.g.
        ``{"train": {"epochs": 300, "patience": 100}}``.
        """
        ...

    def default_split(self, options: Mapping[str, Any]) -> str | None:
        """The split manifest used when ``data.split`` is not set.

        None: the dataset's own lists, or the seeded generator.
        """
        ...


DATASETS: Registry[DatasetSource] = Registry("dataset")
