"""Words on the figures and in their file names: metric labels, branch names, file stems.

Logged metric keys become readable labels (``eval/dice_mean`` -> "Dice (eval, %)"), a
co-training branch is named after its weighting strategy (DHC's ``a`` -> "DiffDW (branch
A)"), and a figure's file name names the runs it shows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from dhcbench.datasets.classes import abbreviation

#: Readable labels of the logged metric keys the curves draw.
METRIC_LABELS: dict[str, str] = {
    "train/loss": "loss (total)",
    "train/loss_sup": "loss (supervised)",
    "train/loss_unsup": "loss (unsupervised, before λ)",
    "train/lambda": "λ (unsupervised weight)",
    "train/lr": "learning rate",
    "eval/dice_mean": "Dice (eval, %)",
    "eval/best_dice_mean": "best Dice so far (eval, %)",
}

#: Characters kept in a file stem; any other becomes ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def metric_label(key: str) -> str:
    """A readable label for a logged metric key.

    Known keys come from :data:`METRIC_LABELS`, ``eval/dice/<class>`` gives the class's
    abbreviation, another ``train/loss_<x>`` "loss (<x>)", anything else its last part with
    spaces for underscores.
    """
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    if key.startswith("eval/dice/"):
        return abbreviation(key[len("eval/dice/"):])
    last = key.rsplit("/", 1)[-1]
    if last.startswith("loss_"):
        return f"loss ({last[len('loss_'):].replace('_', ' ')})"
    return last.replace("_", " ")


def branch_titles(spec: Any, num_classes: int) -> dict[str, str]:
    """Panel titles of a run's weighted learners, named after their weighting strategy.

    ``spec`` is the run's :class:`~dhcbench.benchmark.spec.RunSpec`; the method is built
    with tiny networks only to read its strategies. DHC gives ``{"a": "DiffDW (branch A)",
    "b": "DistDW (branch B)"}``, CPS ``Org`` (uniform) twice; a learner that is not a
    branch (``student``) is named as it is. Methods without strategies give ``{}``.
    """
    from dhcbench.benchmark.building import toy_method

    method = toy_method(spec, num_classes)
    strategies = getattr(method, "strategies", {})
    return {key: f"{type(s).title or key} "
                 f"({'branch ' + key.upper() if len(key) == 1 else key})"
            for key, s in strategies.items()}


def short_id(run_id: str) -> str:
    """The first 8 characters of an MLflow run id (unique enough to tell runs apart)."""
    return run_id[:8]


def safe(text: str) -> str:
    """``text`` with every run of characters unsafe in a file name replaced by ``_``."""
    return _UNSAFE.sub("_", text).strip("_") or "x"


def run_stem(kind: str, run_name: str, run_id: str) -> str:
    """``<kind>_<run name>_<short id>`` for a figure of one run (weights, curves)."""
    return f"{kind}_{safe(run_name)}_{short_id(run_id)}"


def runs_stem(kind: str, methods: Sequence[str], run_ids: Sequence[str],
              case_id: str | None = None) -> str:
    """``<kind>[_<case>]_<method1>-<method2>…_<short ids>`` for a figure of several runs.

    Methods are listed once each, in the given order (more than 6: the first 6 and
    ``+<n>``); the runs by their short ids joined with ``-``, or, past 4 runs,
    ``<n>runs-<hash>`` (8 hex digits of the sorted ids), so another selection of runs never
    overwrites the file.
    """
    unique = list(dict.fromkeys(methods))
    listed = "-".join(safe(m) for m in unique[:6])
    if len(unique) > 6:
        listed += f"+{len(unique) - 6}"
    if len(run_ids) <= 4:
        ids = "-".join(short_id(r) for r in run_ids)
    else:
        digest = hashlib.sha1(",".join(sorted(run_ids)).encode()).hexdigest()[:8]
        ids = f"{len(run_ids)}runs-{digest}"
    case = f"_{safe(case_id)}" if case_id else ""
    return f"{kind}{case}_{listed}_{ids}"
