"""Datasets: specs, the registry, prepared-data storage, splits and loaders.

Importing this package registers every dataset.
"""

from dhcbench.datasets import phantom as phantom  # noqa: F401  (registers "phantom")
from dhcbench.datasets import real as real  # noqa: F401  (registers synapse, amos, nnunet)
from dhcbench.datasets.base import DATASETS, DatasetSpec, data_root

__all__ = ["DATASETS", "DatasetSpec", "data_root"]
