"""Planning a run: everything decided and checked before the first step is trained.

The per-seed specs are resolved from their layers and validated, the dataset opened and the
split drawn, and the run's identity (keys, names, checkpoint folders) derived.

Everything that can be wrong with the input (method, dataset, ratio, seeds, settings,
output folder, the dataset itself) is checked by :func:`plan_run` before the tracking store
is touched, so bad input leaves no trace in MLflow; :mod:`dhcbench.benchmark.runner` then
executes the plan.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from dhcbench import __version__
from dhcbench.benchmark.building import build_method
from dhcbench.benchmark.spec import (
    RunSpec,
    build_spec,
    check_layer,
    check_seed,
    flatten,
    spec_key,
)
from dhcbench.benchmark.tracking import KEY, ROLE
from dhcbench.datasets import DATASETS, DatasetSpec, data_root
from dhcbench.datasets.splits import Split, ratio_tag, resolve_split
from dhcbench.datasets.storage import PreparedDataset
from dhcbench.errors import UserError
from dhcbench.evaluation.inference import resolve_device
from dhcbench.methods import METHODS


@dataclass(frozen=True)
class RunPlan:
    """Validated per-seed specs and the opened dataset."""

    specs: tuple[RunSpec, ...]
    dataset_spec: DatasetSpec
    dataset: PreparedDataset
    split: Split
    key: str


@functools.cache
def git_sha() -> str:
    """Commit of the package's source tree, or ``unknown`` outside a git checkout.

    Git is asked once per process (at most 5 seconds): every parent and seed run is tagged
    with the answer.
    """
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def seed_list(seeds: int, explicit: Sequence[int] | None) -> list[int]:
    """``--seeds N``: the paper's seeds 0, 1, 666 first, then 2, 3, …; ``--seed-list`` wins.

    Every seed is checked (:func:`dhcbench.benchmark.spec.check_seed`) before any is used.
    """
    if explicit:
        for seed in explicit:
            check_seed(seed, f"--seed-list {','.join(map(str, explicit))}")
        if len(set(explicit)) != len(explicit):
            raise UserError(f"--seed-list {list(explicit)}: seeds repeat")
        return list(explicit)
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: need at least one seed")
    out = [0, 1, 666]
    extra = 2
    while len(out) < seeds:
        if extra not in out:
            out.append(extra)
        extra += 1
    return out[:seeds]


def _check_writable(folder: Path) -> None:
    """A UserError unless ``folder`` can be created or written; creates nothing.

    An existing folder must be writable; a missing one needs its nearest existing ancestor
    to be a writable folder.
    """
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"no write permission on {existing}"
    if problem:
        raise UserError(f"{folder}: output folder cannot be written ({problem})")


def resolve_specs(
    method: str,
    dataset: str,
    ratio: float,
    seeds: Sequence[int],
    layers: Sequence[Mapping[str, Any]] = (),
) -> list[RunSpec]:
    """Per-seed RunSpecs: code defaults < dataset preset < method overrides < ``layers``."""
    info = METHODS.get(method)
    source = DATASETS.get(dataset)
    base = {"method": {"name": info.key}, "data": {"name": source.name, "ratio": ratio}}
    stack = [base, source.preset(ratio), dict(info.train_overrides), *layers]
    first = build_spec([*stack, {"seed": seeds[0]}])
    # A layer may not switch method or dataset: presets were chosen for these two.
    if first.method.name != info.key or first.data.name != source.name:
        raise UserError("method.name and data.name come from --method and --dataset;"
                        " remove them from --config / --set")
    return [replace(first, seed=s) for s in seeds]


def plan_run(
    method: str,
    dataset: str,
    ratio: float,
    seeds: Sequence[int],
    layers: Sequence[Mapping[str, Any]] = (),
    on_prepare: Callable[[int, int], None] | None = None,
) -> RunPlan:
    """Validate everything and open (or generate) the dataset; touches no tracking store."""
    specs = resolve_specs(method, dataset, ratio, seeds, layers)
    spec = specs[0]
    info = METHODS.get(spec.method.name)
    source = DATASETS.get(spec.data.name)
    root = data_root(spec.data.root)
    dspec = source.spec(spec.data.options, spec.data.patch_size, root)
    resolve_device(spec.train.device)  # an unusable device fails here, before any run
    # Building the method validates its variant and keyword arguments before any run starts.
    method = build_method(spec, dspec)
    _check_writable(Path(spec.tracking.out_dir))
    ds = source.open(dspec, spec.data.options, root, on_prepare)
    split = resolve_split(
        ds, spec.data.ratio, spec.data.split_seed,
        need_unlabeled=info.data_mode == "semi",
        manifest=split_manifest_name(spec, source), cover_classes=spec.data.cover_classes,
        allow_inconsistent=spec.data.allow_inconsistent_split,
    )
    plan = RunPlan(tuple(specs), dspec, ds, split, invocation_key(specs))
    # Strategies that need the labeled counts (CLD's weights) fail here, before any run.
    method.setup(labeled_counts(plan, info.data_mode))
    return plan


def training_ids(plan: RunPlan, data_mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(labeled, unlabeled) case ids the sampler uses for a method's data mode."""
    if data_mode == "all":
        return plan.split.train, ()
    return plan.split.labeled, plan.split.unlabeled


def training_cases(plan: RunPlan, data_mode: str) -> str:
    """The training cases a method's data mode uses, in words (run header, description).

    ``4 labeled / 16 unlabeled`` for a semi-supervised method, ``4 labeled cases (no
    unlabeled ones)`` for one trained on the labeled cases only, ``20 training cases, all
    labeled`` for one trained on every case.
    """
    labeled, unlabeled = training_ids(plan, data_mode)
    if data_mode == "all":
        return f"{len(labeled)} training cases, all labeled"
    if data_mode == "labeled":
        return f"{len(labeled)} labeled cases (no unlabeled ones)"
    return f"{len(labeled)} labeled / {len(unlabeled)} unlabeled"


def labeled_counts(plan: RunPlan, data_mode: str) -> torch.Tensor:
    """Voxel counts per class (K,) of the labeled ground truth the method trains on."""
    ids = training_ids(plan, data_mode)[0]
    return torch.as_tensor(plan.dataset.class_counts(ids), dtype=torch.int64)


def invocation_key(specs: Sequence[RunSpec]) -> str:
    """Identity of a ``dhcbench run`` invocation: the spec (without seed) and its seeds."""
    seeds = ",".join(str(s.seed) for s in specs)
    return hashlib.sha256(f"{spec_key(specs[0])}|{seeds}".encode()).hexdigest()[:12]


def split_manifest_name(spec: RunSpec, source: Any) -> str | None:
    """``data.split`` resolved: a manifest name, or None for the dataset's own lists."""
    if spec.data.split == "folder":
        return None
    return spec.data.split or source.default_split(spec.data.options)


def run_name(spec: RunSpec, seed: int | None = None) -> str:
    """Derived identity: ``<method>-<dataset>-<ratio>[-seed<n>]``."""
    name = f"{spec.method.name}-{spec.data.name}-{ratio_tag(spec.data.ratio)}"
    return name if seed is None else f"{name}-seed{seed}"


def checkpoint_dir(spec: RunSpec, run_id: str) -> Path:
    """The checkpoint folder of one seed run.

    ``<out>/<experiment>/<method>-<dataset>-<ratio>-seed<n>-<spec key>-<run id>``: two runs
    of the same spec (parallel tuning trials, repeated invocations) never share one.
    """
    return (Path(spec.tracking.out_dir) / spec.tracking.experiment
            / f"{run_name(spec, spec.seed)}-{spec_key(spec)}-{run_id[:8]}")


def default_layers(config: Path | None, overrides: Sequence[str]) -> list[dict[str, Any]]:
    """The user's override layers: the YAML file first, then each ``--set``.

    Each layer is checked on its own (:func:`dhcbench.benchmark.spec.check_layer`), so an
    error names the file or the ``--set`` it comes from.
    """
    from dhcbench.benchmark.spec import load_config_file, parse_assignment

    layers: list[dict[str, Any]] = []
    if config is not None:
        layers.append(check_layer(load_config_file(config), str(config)))
    layers.extend(check_layer(parse_assignment(o), f"--set {o.split('=', 1)[0]}")
                  for o in overrides)
    return layers


def run_tags(spec: RunSpec, plan: RunPlan, role: str) -> dict[str, Any]:
    """The tags that identify a run (parent or seed) in the tracking store."""
    return {
        ROLE: role,
        KEY: plan.key,
        "method": spec.method.name,
        "dataset": spec.data.name,
        "ratio": spec.data.ratio,
        "contract": spec.eval.contract,
        "variant": spec.method.variant,
        "family": METHODS.get(spec.method.name).family,
        "profile": plan.dataset_spec.profile,
        "classes": ",".join(plan.dataset_spec.class_names),
        "dataset_name": plan.dataset_spec.name,
        "git_sha": git_sha(),
        "version": __version__,
    }


def run_params(spec: RunSpec, plan: RunPlan, resolved: Mapping[str, Any] | None = None,
               ) -> dict[str, Any]:
    """A run's parameters: the flat spec and the resolved split and geometry.

    ``resolved`` is the spec as a tree with its defaults filled in (see
    :func:`dhcbench.benchmark.run_records.resolved_spec`); None logs the spec as given.
    """
    tree = spec.to_dict() if resolved is None else resolved
    params = {k: v for k, v in flatten(tree).items() if not k.startswith("tracking.")}
    params.update({
        "split.source": plan.split.source,
        "split.sha256": plan.split.sha256(),
        "split.labeled": ",".join(plan.split.labeled),
        "split.test_ids": ",".join(plan.split.test),
        "split.num_labeled": len(plan.split.labeled),
        "split.num_unlabeled": len(plan.split.unlabeled),
        "split.labeled_voxels": ",".join(
            str(int(v)) for v in plan.dataset.class_counts(plan.split.labeled)),
        "data.profile": plan.dataset_spec.profile,
        "data.resolved_patch_size": list(plan.dataset_spec.patch_size),
    })
    return params
