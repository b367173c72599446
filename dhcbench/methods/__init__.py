"""Methods: networks, losses, class-weighting strategies and the method registry.

Importing this package registers every method (each module registers at its definition
site).
"""

from dhcbench.methods import cotraining as cotraining  # noqa: F401  (registers cps, dhc)
from dhcbench.methods.base import METHODS, Method, MethodInfo

__all__ = ["METHODS", "Method", "MethodInfo"]
