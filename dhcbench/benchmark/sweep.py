"""``dhcbench sweep SUITE``: a whole benchmark as one resumable plan of jobs.

A benchmark is methods × datasets × ratios × seeds, run here or on a SLURM cluster through
submitit. A suite is a TOML file (or the name of a shipped one)::

    name = "synapse-20p"
    experiment = "dhcbench"          # MLflow experiment (optional)
    [defaults]                       # settings for every run, as --set keys
    "train.epochs" = 300
    [[group]]
    methods = ["cps", "dhc"]
    datasets = ["synapse"]
    ratios = [0.2]
    seeds = [0, 1, 666]
    [group.set]                      # settings for this group only
    "train.lr" = 0.03

Each (method, dataset, ratio, seed) is a job whose key is the hash of its resolved spec and
the package version (``spec_key(spec, with_seed=True)``, the ``dhcbench.seed_key`` tag of its
MLflow run): a job whose run FINISHED is skipped, an unfinished one is resumed from its
checkpoint, the rest start fresh — so running a suite twice trains each run once.

This module reads and validates suites; the jobs themselves are in
:mod:`dhcbench.benchmark.jobs` and the ways to run them in
:mod:`dhcbench.benchmark.executors`, both importable from here too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from itertools import product
from pathlib import Path
from typing import Any

from dhcbench.benchmark.building import check_method

# The jobs and their executors have their own modules; their names stay importable from here.
from dhcbench.benchmark.executors import cpu_workers as cpu_workers
from dhcbench.benchmark.executors import run_local as run_local
from dhcbench.benchmark.executors import submit as submit
from dhcbench.benchmark.executors import visible_gpus as visible_gpus
from dhcbench.benchmark.executors import worker_slots as worker_slots
from dhcbench.benchmark.jobs import Job as Job
from dhcbench.benchmark.jobs import job_states as job_states
from dhcbench.benchmark.jobs import run_job as run_job
from dhcbench.benchmark.planning import resolve_specs
from dhcbench.benchmark.spec import (
    MAX_SEED,
    check_layer,
    check_seed,
    deep_merge,
    dotted_layer,
    spec_key,
)
from dhcbench.errors import UserError

SUITE_KEYS = {"name", "experiment", "defaults", "group", "description"}
GROUP_KEYS = {"methods", "datasets", "ratios", "seeds", "set"}


@dataclass
class Suite:
    """A parsed suite: its name, the MLflow experiment of its runs, and its jobs.

    ``jobs`` come in the file's order (group by group, then methods × datasets × ratios ×
    seeds); ``source`` names where the suite was read from, for messages.
    """

    name: str
    experiment: str
    jobs: list[Job] = field(default_factory=list)
    source: str = ""


def shipped_suites() -> list[str]:
    """Names of the suites shipped with the package."""
    folder = resources.files("dhcbench.data").joinpath("suites")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _layer(settings: Any, where: str) -> dict[str, Any]:
    """``{"train.lr": 0.01}`` (dotted keys, typed TOML values) -> a nested override layer.

    The table must be a TOML table; the layer is checked on its own
    (:func:`dhcbench.benchmark.spec.check_layer`), errors naming ``where``.
    """
    if not isinstance(settings, Mapping):
        raise UserError(f"{where}: expected a table of settings, got {settings!r}")
    layer: dict[str, Any] = {}
    for key, value in settings.items():
        try:
            layer = deep_merge(layer, dotted_layer(key, value, where))
        except UserError as exc:
            raise UserError(exc.args[0] if str(exc).startswith(where)
                            else f"{where}: {exc}") from None
    return check_layer(layer, where)


def _text(data: Mapping[str, Any], key: str, default: str, source: str) -> str:
    """The suite's top-level ``key`` as non-empty text (``default`` when absent)."""
    value = data.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{source}: {key!r} must be non-empty text, got {value!r}")
    return value


def load_suite(ref: str) -> Suite:
    """Parse a suite file (or shipped suite name) into jobs; every spec is validated.

    ``ref`` is a path to a TOML file or the name of a shipped suite (:func:`shipped_suites`).
    The suite's name defaults to the file's stem and its experiment to ``dhcbench``. Any
    problem (no such suite, invalid TOML, an unknown or missing key, a value of the wrong
    type or out of range, a bad setting) is a UserError naming the suite and, where it
    applies, the group (counted from 1).
    """
    data, source = _read_suite(ref)
    _refuse_unknown(data, SUITE_KEYS, source)
    groups = data.get("group", [])
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        raise UserError(f"{source}: 'group' must be an array of tables ([[group]])")
    if not groups:
        raise UserError(f"{source}: no [[group]] of runs")
    defaults = _layer(data.get("defaults", {}), f"{source} [defaults]")
    suite = Suite(_text(data, "name", Path(ref).stem, source),
                  _text(data, "experiment", "dhcbench", source), source=source)
    for i, group in enumerate(groups):
        suite.jobs.extend(_group_jobs(group, f"{source} group {i + 1}", defaults,
                                      suite.experiment))
    return suite


def _read_suite(ref: str) -> tuple[dict[str, Any], str]:
    """The parsed TOML of a suite file or shipped suite, and a name of its source."""
    path = Path(ref)
    if path.is_file():
        text, source = path.read_text(), str(path)
    elif ref in shipped_suites():
        source = f"shipped suite {ref}"
        text = resources.files("dhcbench.data").joinpath("suites", f"{ref}.toml").read_text()
    else:
        raise UserError(f"{ref}: no such suite file nor shipped suite"
                        f" (shipped: {', '.join(shipped_suites())})")
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source}: not valid TOML ({exc})") from exc


def _refuse_unknown(table: Mapping[str, Any], valid: set[str], where: str) -> None:
    """A UserError for the first key of ``table`` (alphabetically) that is not ``valid``."""
    unknown = sorted(set(table) - valid)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}"
                        f" (valid: {', '.join(sorted(valid))})")


def _entries(group: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """A group's ``key``: a non-empty array of values of the key's type, checked.

    ``methods`` and ``datasets`` are names, ``ratios`` numbers in (0, 1] and ``seeds``
    non-negative integers; repeated values are refused.
    """
    values = group.get(key)
    if not isinstance(values, list) or not values:
        raise UserError(f"{where}: {key!r} must be a non-empty array, got {values!r}")
    for value in values:
        bad = ""
        if key in ("methods", "datasets"):
            bad = "" if isinstance(value, str) and value.strip() else "a name"
        elif key == "ratios":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            bad = "" if ok and 0 < value <= 1 else "a fraction in (0, 1], e.g. 0.2"
        elif key == "seeds":
            try:
                check_seed(value, key)
            except UserError:
                bad = f"an integer in [0, {MAX_SEED}]"
        if bad:
            raise UserError(f"{where}: {key} entry {value!r} is not {bad}")
    if len(set(map(str, values))) != len(values):
        raise UserError(f"{where}: {key!r} repeats a value ({values!r})")
    return values


def _group_jobs(group: Mapping[str, Any], where: str, defaults: Mapping[str, Any],
                experiment: str) -> list[Job]:
    """The jobs of one ``[[group]]``, each with its resolved and validated spec's key.

    A job's layers are the suite's defaults, the group's ``set`` and the experiment.
    """
    _refuse_unknown(group, GROUP_KEYS, where)
    missing = [k for k in ("methods", "datasets", "ratios", "seeds") if k not in group]
    if missing:
        raise UserError(f"{where}: missing {missing[0]!r}")
    axes = [_entries(group, k, where) for k in ("methods", "datasets", "ratios", "seeds")]
    layers = (defaults, _layer(group.get("set", {}), f"{where} [group.set]"),
              {"tracking": {"experiment": experiment}})
    jobs = []
    checked: set[str] = set()
    for method, dataset, ratio, seed in product(*axes):
        try:
            (spec,) = resolve_specs(method, dataset, float(ratio), [seed], list(layers))
            built = repr((spec.method.name, spec.method.variant, spec.method.kwargs))
            if built not in checked:  # one build per method and arguments
                check_method(spec)
                checked.add(built)
        except UserError as exc:
            raise UserError(f"{where} ({method}, {dataset}, {ratio:g}, seed {seed}): {exc}"
                            ) from None
        jobs.append(Job(spec.method.name, dataset, float(ratio), seed, layers,
                        spec_key(spec, with_seed=True)))
    return jobs
