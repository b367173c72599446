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
from dhcbench.registry import Registry

#: Environment variable naming the prepared-data cache folder.
DATA_ENV = "DHCBENCH_DATA"
DEFAULT_DATA_DIR = "dhcbench-data"


def data_root(explicit: str | None = None) -> Path:
    """The prepared-data cache: ``explicit``, else ``$DHCBENCH_DATA``, else ``./dhcbench-data``."""
    return Path(explicit or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)


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
        return len(self.class_names)


class DatasetSource(Protocol):
    """A registered dataset."""

    name: str
    title: str
    description: str
    reference: str
    ratios: tuple[float, ...]  # the labeled ratios of the paper for this dataset
    classes_text: str  # how many foreground classes, for listings

    def spec(self, options: Mapping[str, Any], patch_size: tuple[int, int, int] | None,
             root: Path | None = None) -> DatasetSpec: ...

    def open(self, spec: DatasetSpec, options: Mapping[str, Any], root: Path,
             on_progress: Callable[[int, int], None] | None = None) -> PreparedDataset: ...

    def preset(self, ratio: float) -> dict[str, Any]: ...

    def default_split(self, options: Mapping[str, Any]) -> str | None:
        """The split manifest used when ``data.split`` is not set (None: the dataset's own
        lists, or the seeded generator)."""
        ...


DATASETS: Registry[DatasetSource] = Registry("dataset")
