"""Pseudo-labelers: how each learner's unsupervised targets are made.

They fill the pseudo-labeling slot of :mod:`dhcbench.methods.cotraining`.
:mod:`~dhcbench.methods.pseudo.base` holds the interface (``setup`` / ``targets``, which
returns a :class:`PseudoTargets` per learner and computes no loss), the state handling and
the :data:`PSEUDO_LABELERS` registry with its ``@pseudo_labeler(key)`` decorator;
:mod:`~dhcbench.methods.pseudo.functional` the pure math. Every other module is one
labeler, following the DHC reference code (reference §8); ``variant="fixed"`` follows the
method's own paper where the code departs from it:

- ``hard``: CPS — the other branch's argmax, through the configured unsupervised loss;
- ``depl``: DePL (Wang et al., CVPR 2022) — debiased by per-voxel class priors;
- ``adsh``: Adsh (Guo & Li, ICML 2022) — adaptive per-class thresholds;
- ``cld``: CLD (Lin et al., MICCAI 2022) — confidence-based per-class sampling;
- ``uamt``: UA-MT (Yu et al., MICCAI 2019) — the EMA teacher's softmax, uncertainty-masked;
- ``basak``: Basak et al. (MICCAI 2022) — the teacher's argmax, sampled per class.

Importing the package imports every module of it (sorted by name; names starting with
``_`` are skipped), which registers the labelers: a new one is one file here.
"""

from __future__ import annotations

import importlib
import pkgutil

from dhcbench.methods.pseudo.adsh import Adsh
from dhcbench.methods.pseudo.basak import ClassSampling
from dhcbench.methods.pseudo.base import (
    OTHER,
    PSEUDO_LABELERS,
    TOPOLOGIES,
    PseudoInput,
    PseudoLabeler,
    PseudoTargets,
    TensorState,
    pseudo_labeler,
)
from dhcbench.methods.pseudo.cld import CLD
from dhcbench.methods.pseudo.depl import DePL
from dhcbench.methods.pseudo.functional import predictive_entropy, uamt_threshold
from dhcbench.methods.pseudo.hard import HardLabels
from dhcbench.methods.pseudo.uamt import UncertaintyMask

# CLD's class weights are computed once, in the weighting package; kept importable from here.
from dhcbench.methods.weighting.functional import cld_weights


def _import_labelers() -> list[str]:
    """Import every module of this package, which registers the labelers they define.

    Modules are imported sorted by name, names starting with ``_`` skipped; returns the
    module names.
    """
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


_import_labelers()

__all__ = [
    "CLD",
    "OTHER",
    "PSEUDO_LABELERS",
    "TOPOLOGIES",
    "Adsh",
    "ClassSampling",
    "DePL",
    "HardLabels",
    "PseudoInput",
    "PseudoLabeler",
    "PseudoTargets",
    "TensorState",
    "UncertaintyMask",
    "cld_weights",
    "predictive_entropy",
    "pseudo_labeler",
    "uamt_threshold",
]
