"""Paired statistics of a method against a baseline over (case, seed) pairs.

For every test case and seed both methods were run with, the case's mean Dice over classes
(under the chosen contract; NaN classes excluded under ``rigorous``) forms a pair. Reported:
the number of pairs, the mean difference, a percentile bootstrap 95 % interval of that mean
(``n_boot`` resamples of the pairs, seeded), and the two-sided Wilcoxon signed-rank test
(scipy, zero differences dropped as in Wilcoxon's original method).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class PairedResult:
    """A method compared with a baseline over their common (seed, case) pairs.

    Differences are method minus baseline in Dice %: their mean with a bootstrap 95 %
    interval, and the Wilcoxon signed-rank statistic with its two-sided p-value (all NaN
    when there are no pairs).
    """

    n_pairs: int
    mean_diff: float
    ci_low: float
    ci_high: float
    wilcoxon_stat: float
    p_value: float

    def as_dict(self) -> dict[str, float]:
        """The result as the extra CSV columns of the table.

        Keys: pairs, mean_diff, ci95_low, ci95_high, wilcoxon_stat, wilcoxon_p.
        """
        return {"pairs": self.n_pairs, "mean_diff": self.mean_diff, "ci95_low": self.ci_low,
                "ci95_high": self.ci_high, "wilcoxon_stat": self.wilcoxon_stat,
                "wilcoxon_p": self.p_value}


def case_means(rows: pd.DataFrame, contract: str = "dhc") -> pd.Series:
    """Mean Dice (%) over classes per (seed, case).

    ``rows`` are tidy evaluation rows (:data:`dhcbench.evaluation.scoring.COLUMNS`) with an
    added ``seed`` column; only ``contract``'s Dice rows count, NaN values skipped. Returns
    a Series indexed by (seed, case).
    """
    dice = rows[(rows.contract == contract) & (rows.metric == "dice")]
    return dice.groupby(["seed", "case"])["value"].mean()


def paired_test(method: pd.Series, baseline: pd.Series, n_boot: int = 10_000, seed: int = 0
                ) -> PairedResult:
    """Compare two (seed, case)-indexed series of case means on their common pairs.

    Pairs missing on either side or NaN are dropped. The bootstrap draws ``n_boot``
    resamples of the pairs with a generator seeded by ``seed``; all-zero differences give
    statistic 0 and p 1 (the signed-rank test has no ranks to use).
    """
    joined = pd.concat([method.rename("m"), baseline.rename("b")], axis=1, join="inner")
    joined = joined.dropna()
    diff = (joined["m"] - joined["b"]).to_numpy(float)
    n = len(diff)
    if n == 0:
        return PairedResult(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    if np.all(diff == 0):
        stat, p = 0.0, 1.0
    else:
        res = stats.wilcoxon(joined["m"].to_numpy(float), joined["b"].to_numpy(float),
                             zero_method="wilcox", alternative="two-sided")
        stat, p = float(res.statistic), float(res.pvalue)
    return PairedResult(n, float(diff.mean()), float(low), float(high), stat, p)
