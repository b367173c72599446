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
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dhcbench.errors import UserError

#: The paper's seeds (reference §9, issue #7 of the reference repository).
PAPER_SEEDS = (0, 1, 666)


@dataclass(frozen=True)
class MethodSpec:
    """Which method, which variant (``reference`` code or ``paper`` equations), its kwargs."""

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
    """Optimisation and schedule (reference §5): SGD (momentum 0.9, Nesterov, weight decay
    3e-5) per network, poly(0.9) LR and sigmoid ramp-up of λ per epoch, E+1 epochs,
    evaluation every ``eval_interval`` epochs, early stopping after ``patience`` epochs
    without improvement (None: never). ``iters_per_epoch`` None is the reference's
    ceil(N_unlabeled / batch). ``amp`` applies on CUDA only; ``device`` auto picks CUDA when
    available."""

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
    amp: bool = True
    eval_interval: int = 10
    patience: int | None = 100
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = False
    compile: bool = False


@dataclass(frozen=True)
class EvalSpec:
    """Test-time evaluation: sliding-window stride (None: patch // 4, the reference's
    16/32/32 for 64×128×128), windows per forward pass, the contract shown by default (both
    are always computed), whether the last checkpoint is tested besides the best, and whether
    the test split is read at all (``run_test=false`` for tuning: model selection and tuning
    never see the test cases)."""

    stride: tuple[int, int, int] | None = None
    window_batch: int = 4
    contract: str = "dhc"
    test_last: bool = True
    run_test: bool = True


@dataclass(frozen=True)
class TrackingSpec:
    """Where results go: MLflow experiment and URI (None: MLflow's default, ``mlflow.db`` in
    the working folder) and the folder for checkpoints."""

    experiment: str = "dhcbench"
    uri: str | None = None
    out_dir: str = "dhcbench-runs"
    log_checkpoint: bool = True


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run (one seed)."""

    method: MethodSpec = field(default_factory=MethodSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted-key view (``train.lr`` …) for MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = value

        walk("", self.to_dict())
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


# -- building and overriding ------------------------------------------------------------------


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where)
    try:
        if hint is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, bool | int):
                return bool(value)
            raise ValueError(value)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is str:
            if not isinstance(value, str | int | float):
                raise ValueError(value)
            return str(value)
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("x", ",").split(",") if v.strip()]
            items = list(value)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(v, args[0], where) for v in items)
            if len(items) != len(args):
                raise ValueError(f"needs {len(args)} values")
            return tuple(_coerce(v, a, where) for v, a in zip(items, args, strict=True))
        if origin is dict or hint is dict:
            if not isinstance(value, Mapping):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: cannot use {value!r} here ({exc})") from exc
    return value


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(
            f"unknown setting {where + '.' if where else ''}{unknown[0]}"
            f" (valid: {', '.join(names)})"
        )
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in data:
            continue
        hint = hints[name]
        sub = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            value = data[name]
            if not isinstance(value, Mapping):
                raise UserError(f"{sub}: expected a mapping of settings")
            kwargs[name] = _build(hint, value, sub)
        else:
            kwargs[name] = _coerce(data[name], hint, sub)
    return cls(**kwargs)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``override`` wins. Free-form dicts (kwargs, options) merge too."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def dotted_layer(key: str, value: Any, where: str) -> dict[str, Any]:
    """``"a.b.c", value`` -> ``{"a": {"b": {"c": value}}}``; ``where`` names the source of
    the key in the error an empty key raises."""
    parts = [p for p in str(key).strip().split(".") if p]
    if not parts:
        raise UserError(f"{where}: empty setting key")
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def parse_assignment(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``, the value read as YAML."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=50")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise UserError(f"--set {text!r}: value is not valid YAML ({exc})") from exc
    return dotted_layer(key, value, f"--set {text!r}")


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML run-spec override file (the format :func:`write_config_file` writes)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise UserError(f"{path}: expected a mapping of settings at the top level")
    return dict(data)


def write_config_file(path: Path, overrides: Mapping[str, Any]) -> None:
    """Write overrides as YAML that ``--config`` accepts."""
    Path(path).write_text(yaml.safe_dump(dict(overrides), sort_keys=False))


def build_spec(layers: list[Mapping[str, Any]]) -> RunSpec:
    """Merge override layers (first lowest) over the code defaults and validate the result."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    spec = _build(RunSpec, merged, "")
    validate(spec)
    return spec


def validate(spec: RunSpec) -> None:
    """Value checks that types alone do not express."""
    t, d = spec.train, spec.data
    if not 0.0 < d.ratio <= 1.0:
        raise UserError(f"--ratio {d.ratio}: must be a fraction in (0, 1], e.g. 0.2 for 20%")
    for name in ("epochs", "batch_labeled", "batch_unlabeled", "eval_interval", "base_filters"):
        if getattr(t, name) < (0 if name == "epochs" else 1):
            raise UserError(f"train.{name} must be positive, got {getattr(t, name)}")
    if t.lr <= 0:
        raise UserError(f"train.lr must be positive, got {t.lr}")
    if t.iters_per_epoch is not None and t.iters_per_epoch < 1:
        raise UserError("train.iters_per_epoch must be >= 1 (or null for the reference's)")
    if t.patience is not None and t.patience < 1:
        raise UserError("train.patience must be >= 1 (or null: no early stopping)")
    if d.patch_size is not None and any(p < 16 or p % 16 for p in d.patch_size):
        raise UserError(
            f"data.patch_size {d.patch_size}: every side must be a multiple of 16"
            " (the V-Net downsamples four times)"
        )
    if spec.eval.contract not in ("dhc", "rigorous"):
        raise UserError(f"eval.contract must be dhc or rigorous, got {spec.eval.contract!r}")
    if spec.eval.window_batch < 1:
        raise UserError("eval.window_batch must be >= 1")
    if spec.method.variant not in ("reference", "paper", "fixed"):
        raise UserError(
            f"method.variant must be reference, paper or fixed, got {spec.method.variant!r}"
        )
