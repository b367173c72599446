"""Significance against a baseline for ``dhcbench table --baseline``.

Every method of a table is compared with the baseline by :func:`dhcbench.reports.stats.paired_test`
over the (case, seed) pairs of their per-case test rows, downloaded from each seed run's
``metrics/test_cases_<checkpoint>.csv`` artifact. A method whose Wilcoxon p-value is below
:data:`ALPHA` gets the :data:`~dhcbench.reports.cells.SIGNIFICANT` mark on its Avg. Dice.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from dhcbench.errors import UserError
from dhcbench.reports.cells import SIGNIFICANT
from dhcbench.reports.stats import case_means, paired_test

if TYPE_CHECKING:
    from dhcbench.benchmark.tracking import Tracker

#: Wilcoxon p-value below which a difference is marked significant.
ALPHA = 0.05


def _case_rows(tracker: Tracker, run_id: str, checkpoint: str, seed: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.download_artifact(run_id, f"metrics/test_cases_{checkpoint}.csv",
                                         Path(tmp))
        rows = pd.read_csv(path)
    rows["seed"] = seed
    return rows


def baseline_statistics(tracker: Tracker, group: pd.DataFrame, baseline: str, contract: str,
                        checkpoint: str) -> dict[str, dict[str, float]]:
    """Paired tests of every method against ``baseline`` over (case, seed) pairs.

    ``group`` holds the seed records of one table (columns ``method``, ``run_id``,
    ``seed``); the case rows are those of ``checkpoint`` (best or last), their Dice (%)
    averaged over classes under ``contract``. Returns, per method label other than the
    baseline, :meth:`~dhcbench.reports.stats.PairedResult.as_dict` (pairs, mean difference
    with its bootstrap 95 % interval, Wilcoxon statistic and p-value). A baseline without
    runs in ``group`` is a UserError.
    """
    means = {}
    for label, runs in group.groupby("method"):
        frames = [_case_rows(tracker, r.run_id, checkpoint, r.seed) for r in runs.itertuples()]
        means[str(label)] = case_means(pd.concat(frames), contract)
    if baseline not in means:
        raise UserError(f"--baseline {baseline}: no finished runs of it in this table"
                        f" (methods: {', '.join(sorted(means))})")
    return {label: paired_test(series, means[baseline]).as_dict()
            for label, series in means.items() if label != baseline}


def significance_marks(stats: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """The Avg. Dice mark of every method significantly different from the baseline.

    ``stats`` is :func:`baseline_statistics`'s result; a method is marked when its
    ``wilcoxon_p`` is below :data:`ALPHA`.
    """
    return {m: SIGNIFICANT for m, s in stats.items() if s["wilcoxon_p"] < ALPHA}


def significance_note(baseline: str) -> str:
    """The note under a table with a baseline: what the mark means, where the numbers are.

    The CSV rendering of the table carries the full statistics of every method.
    """
    return (f"{SIGNIFICANT}: paired Wilcoxon p < {ALPHA:g} against {baseline}"
            " over (case, seed) pairs; the CSV has the p-values and"
            " bootstrap 95 % intervals of the mean Dice difference.")
