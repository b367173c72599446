"""Run specifications: one typed, frozen dataclass per concern, validated at the boundary.

Defaults in code follow the reference settings (reference §5, §9); a dataset preset (per
dataset and ratio), a method's own overrides, a YAML file (``--config``) and ``--set a.b=c``
only override, in that order. Unknown keys fail at once with the valid ones. The resolved
spec is logged with every run, and :func:`spec_key` derives the run's identity from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The override layers have their own module; their names stay importable from here.
from dhcbench.benchmark.overrides import build_dataclass
from dhcbench.benchmark.overrides import deep_merge as deep_merge
from dhcbench.benchmark.overrides import dotted_layer as dotted_layer
from dhcbench.benchmark.overrides import load_config_file as load_config_file
from dhcbench.benchmark.overrides import parse_assignment as parse_assignment
from dhcbench.benchmark.overrides import write_config_file as write_config_file
from dhcbench.benchmark.validation import MAX_SEED as MAX_SEED
from dhcbench.benchmark.validation import check_seed as check_seed
from dhcbench.benchmark.validation import validate
from dhcbench.errors import UserError

#: The paper's seeds (reference §9, issue #7 of the reference repository).
PAPER_SEEDS = (0, 1, 666)


@dataclass(frozen=True)
class MethodSpec:
    """Which method, which variant of it, and its keyword arguments.

    ``variant`` is ``reference`` (the original code), ``paper`` (the paper's equations where
    they differ) or ``fixed``; ``kwargs`` go to the method's constructor as they are.
    """

    name: str = "dhc"
    variant: str = "reference"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    """Dataset, labeled ratio (fraction of the training cases) and sampling options.

    ``patch_size`` None takes the dataset's default; ``flip`` turns on the random H/W flips of
    the reference code at HEAD (off by default: when the published numbers were produced the
    flips were no-ops, reference §12 item 15); ``options`` are dataset-specific (phantom:
    ``volume_size``, ``num_cases``, ``seed``; synapse/amos: ``profile``; nnunet: ``name``,
    ``profile``); ``root`` is the prepared-data cache folder (None: ``$DHCBENCH_DATA`` or
    ``./dhcbench-data``). ``split`` names a split manifest (``synapse:dhc2023``,
    ``synapse:dhc2024``, ``amos:dhc``) or ``folder`` (the prepared data's own lists); None is
    the dataset's default. ``split_seed`` 0 uses the shipped labeled lists, any other value
    draws them with that seed; ``cover_classes`` redraws until every class is labeled;
    ``allow_inconsistent_split`` admits the reference's inconsistent AMOS 20 % lists.
    """

    name: str = "phantom"
    ratio: float = 0.2
    patch_size: tuple[int, int, int] | None = None
    split: str | None = None
    split_seed: int = 0
    cover_classes: bool = False
    allow_inconsistent_split: bool = False
    flip: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    root: str | None = None


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation and schedule (reference §5).

    SGD (momentum 0.9, Nesterov, weight decay 3e-5) per network, poly(0.9) LR and sigmoid
    ramp-up of λ per epoch, E+1 epochs, evaluation every ``eval_interval`` epochs, early
    stopping after ``patience`` epochs without improvement (None: never). ``iters_per_epoch``
    None is the reference's ceil(N_unlabeled / batch). ``dropout`` is the probability of
    the V-Nets' two Dropout3d layers (bottleneck and last decoder feature; the reference's
    0.5, §4.1). ``amp`` applies on CUDA only; ``device`` auto picks CUDA when available.
    """

    epochs: int = 300
    iters_per_epoch: int | None = None
    batch_labeled: int = 2
    batch_unlabeled: int = 2
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 3e-5
    nesterov: bool = True
    poly_power: float = 0.9
    unsup_weight: float = 0.1
    rampup: bool = True
    rampup_epochs: int | None = None
    base_filters: int = 32
    dropout: float = 0.5
    amp: bool = True
    eval_interval: int = 10
    patience: int | None = 100
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = False
    compile: bool = False


@dataclass(frozen=True)
class EvalSpec:
    """Test-time evaluation.

    The sliding-window stride in voxels (None: patch // 4, the reference's 16/32/32 for
    64×128×128), windows per forward pass, the contract shown by default (both are always
    computed), whether the last checkpoint is tested besides the best, and whether the test
    split is read at all (``run_test=false`` for tuning: model selection and tuning never see
    the test cases).
    """

    stride: tuple[int, int, int] | None = None
    window_batch: int = 4
    contract: str = "dhc"
    test_last: bool = True
    run_test: bool = True


@dataclass(frozen=True)
class TrackingSpec:
    """Where results go.

    The MLflow experiment and URI (None: MLflow's default, ``mlflow.db`` in the working
    folder), the folder for checkpoints, and whether the best checkpoint is also logged as
    an artifact of the run. None of it changes what a run computes, so :func:`spec_key`
    leaves it out.
    """

    experiment: str = "dhcbench"
    uri: str | None = None
    out_dir: str = "dhcbench-runs"
    log_checkpoint: bool = True


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run (one seed).

    :func:`build_spec` builds and validates one from override layers; the default instance
    holds the code defaults.
    """

    method: MethodSpec = field(default_factory=MethodSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The spec as nested plain dicts, one per concern (tuples stay tuples).

        This is what :func:`spec_key` hashes.
        """
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted-key view (``train.lr`` …) for MLflow params (see :func:`flatten`)."""
        return flatten(self.to_dict())


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys (``train.lr``) down to their leaves.

    ``method.kwargs`` and ``data.options`` are flattened too; an empty dict stays one entry.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", dict(tree))
    return out


def spec_key(spec: RunSpec, *, with_seed: bool = False) -> str:
    """A short hash of what determines results (method, data, train, eval; not tracking).

    Two invocations with the same key compute the same thing, so ``--resume`` and sweeps use
    it to find earlier runs.
    """
    from dhcbench import __version__

    d = spec.to_dict()
    d.pop("tracking")
    if not with_seed:
        d.pop("seed")
    d["version"] = __version__
    text = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_spec(layers: list[Mapping[str, Any]]) -> RunSpec:
    """Merge override layers (first lowest) over the code defaults and validate the result.

    Unknown settings and values of the wrong type (:func:`build_dataclass`) or out of range
    (:func:`validate`) raise a UserError naming the setting.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    spec = build_dataclass(RunSpec, merged, "")
    validate(spec)
    return spec


def check_layer(layer: Any, where: str) -> dict[str, Any]:
    """One override layer checked on its own, before it is merged with any other.

    Every key must be a setting and every value must take its setting's type; in
    particular a section (``train``, ``method.kwargs`` …) must be a mapping, so that a
    scalar in its place cannot silently drop the settings of a lower layer. A problem is a
    UserError that starts with ``where``, the layer's source (a file, a ``--set``).
    Returns the layer as a dict.
    """
    if not isinstance(layer, Mapping):
        raise UserError(f"{where}: expected a mapping of settings, got {layer!r}")
    try:
        build_dataclass(RunSpec, layer, "")
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return dict(layer)
