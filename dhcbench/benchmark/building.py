"""A run's method built from its spec.

Full size for training and prediction; toy size to check its arguments or to read what it is
made of.
"""

from __future__ import annotations

from dhcbench.benchmark.spec import RunSpec
from dhcbench.datasets import DatasetSpec
from dhcbench.methods import METHODS
from dhcbench.methods.base import Method
from dhcbench.methods.networks import set_vnet_dropout


def build_method(spec: RunSpec, dspec: DatasetSpec) -> Method:
    """A fresh method instance for a spec and the dataset's geometry.

    Its networks take the dataset's channels and classes, ``train.base_filters`` and the
    V-Nets' dropout ``train.dropout``; the method's variant and keyword arguments are
    checked on the way (a UserError if bad).
    """
    method = METHODS.get(spec.method.name).build(
        num_classes=dspec.num_classes, in_channels=dspec.channels,
        base_filters=spec.train.base_filters, variant=spec.method.variant,
        kwargs=spec.method.kwargs,
    )
    set_vnet_dropout(method.networks, spec.train.dropout)
    return method


def toy_method(spec: RunSpec, num_classes: int = 3) -> Method:
    """The spec's method with 2-filter networks on one channel and ``num_classes`` (≥ 2).

    Its variant and keyword arguments are checked as at full size (their checks do not
    depend on the geometry); what it is made of (its weighting strategies) can be read.
    """
    return METHODS.get(spec.method.name).build(
        num_classes=max(2, num_classes), in_channels=1, base_filters=2,
        variant=spec.method.variant, kwargs=spec.method.kwargs,
    )


def check_method(spec: RunSpec) -> None:
    """Build the spec's method once, at toy size, to check its variant and keyword arguments.

    For suites, whose jobs are planned (and their dataset opened) only when they run: a bad
    ``method.kwargs`` value is a UserError before any job starts.
    """
    toy_method(spec)
