"""Methods: networks, losses, class-weighting strategies, pseudo-labelers and the registry.

Importing this package registers every method (each module registers at its definition
site).
"""

from dhcbench.methods import cotraining_methods as cotraining_methods  # noqa: F401  cps, dhc, …
from dhcbench.methods import dst as dst  # noqa: F401
from dhcbench.methods import mean_teacher as mean_teacher  # noqa: F401  uamt, basak
from dhcbench.methods import ssnet as ssnet  # noqa: F401
from dhcbench.methods import supervised as supervised  # noqa: F401  fully, labeled-only
from dhcbench.methods import urpc as urpc  # noqa: F401
from dhcbench.methods.base import METHODS, Method, MethodInfo

__all__ = ["METHODS", "Method", "MethodInfo"]
