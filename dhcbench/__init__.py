"""dhcbench: class-imbalanced semi-supervised 3D segmentation benchmark (DHC and baselines)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("dhcbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
