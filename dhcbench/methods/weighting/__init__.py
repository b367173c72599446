"""Class-weighting strategies: DistDW and DiffDW (DHC) and the CReST / SimiS / CLD baselines.

:mod:`~dhcbench.methods.weighting.base` holds the interface (``reset`` / ``update`` /
``state_dict``), the :data:`WEIGHTINGS` registry and the ``@weighting(key)`` decorator;
:mod:`~dhcbench.methods.weighting.functional` the pure per-iteration math. Every other
module of this package is one strategy, and importing the package imports all of them
(sorted by name; names starting with ``_`` are skipped). A new strategy is therefore one
file here, a :class:`WeightingStrategy` subclass with a ``title`` (its name in the ablation
table), ``reset`` and ``update``, decorated with ``@weighting("key")``: that registers it
and gives the ``key-<other>`` ablation pairings of :mod:`dhcbench.methods.cotraining_methods`.
"""

from __future__ import annotations

import importlib
import pkgutil

from dhcbench.methods.weighting.base import VARIANTS, WEIGHTINGS, WeightingStrategy, weighting
from dhcbench.methods.weighting.cld import CLDWeights
from dhcbench.methods.weighting.crest import CReST
from dhcbench.methods.weighting.diffdw import DiffDW
from dhcbench.methods.weighting.distdw import DistDW
from dhcbench.methods.weighting.functional import (
    argmax_histogram,
    crest_weights,
    diffdw_speed_terms,
    diffdw_weights,
    distdw_weights,
    ema,
    simis_weights,
)
from dhcbench.methods.weighting.simis import SimiS
from dhcbench.methods.weighting.uniform import Uniform

#: Modules of this package that are not strategies.
_NOT_STRATEGIES = ("base", "functional")


def _import_strategies() -> list[str]:
    """Import every strategy module of this package, which registers the strategies.

    Modules are imported sorted by name, all but ``_NOT_STRATEGIES`` and names starting
    with ``_``; returns their names.
    """
    names = sorted(m.name for m in pkgutil.iter_modules(__path__)
                   if m.name not in _NOT_STRATEGIES and not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


_import_strategies()

__all__ = [
    "VARIANTS",
    "WEIGHTINGS",
    "CLDWeights",
    "CReST",
    "DiffDW",
    "DistDW",
    "SimiS",
    "Uniform",
    "WeightingStrategy",
    "argmax_histogram",
    "crest_weights",
    "diffdw_speed_terms",
    "diffdw_weights",
    "distdw_weights",
    "ema",
    "simis_weights",
    "weighting",
]
