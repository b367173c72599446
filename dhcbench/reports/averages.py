"""Averages over one set of classes for every row of a table (the rigorous contract).

Under ``rigorous`` a per-class value is NaN (undefined) when the class is absent from both
the ground truth and the prediction, and, for ASD and HD95, when either side is empty; the
run's logged ``rigorous/<metric>_mean`` leaves those classes out, so two methods' averages
may cover different classes (a method that misses a small organ entirely would average
over fewer, easier classes). The table therefore recomputes every seed's average over the
*common* classes: those with a finite value in every seed run of the table. Under ``dhc``
every class has a value in every run, so the logged averages already share one set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dhcbench.datasets.classes import abbreviation

#: The metrics a run logs per class and as an average over classes.
AVERAGED = ("dice", "asd", "hd95")
#: Column headers of the averages.
AVERAGE_HEADERS = {"dice": "Avg. Dice", "asd": "Avg. ASD", "hd95": "Avg. HD95"}


def common_classes(records: pd.DataFrame, class_names: Sequence[str], key_prefix: str
                   ) -> list[str]:
    """The foreground classes whose ``<key_prefix><class>`` is finite in every record.

    ``records`` are per-seed records (one row per seed run), ``key_prefix`` e.g.
    ``rigorous/asd/``; classes keep the order of ``class_names``.
    """
    out = []
    for name in class_names:
        key = f"{key_prefix}{name}"
        if name != "background" and key in records and bool(np.isfinite(
                records[key].to_numpy(float)).all()):
            out.append(name)
    return out


def _phrase(header: str, chosen: list[str], foreground: list[str]) -> str:
    if len(chosen) == len(foreground):
        return f"{header}: all {len(foreground)} classes"
    shown = ", ".join(abbreviation(c) for c in chosen) or "none"
    return f"{header}: {len(chosen)} of {len(foreground)} ({shown})"


def rigorous_averages(records: pd.DataFrame, class_names: Sequence[str], contract: str,
                      shown: Sequence[str] = AVERAGED
                      ) -> tuple[pd.DataFrame, dict[str, list[str]], str]:
    """Each seed's averages over the classes defined in every run (rigorous contract only).

    Returns the records with every ``<contract>/<metric>_mean`` of ``shown`` (metrics of
    :data:`AVERAGED`) replaced by the mean over :func:`common_classes` (NaN when no class is
    common), the classes behind each average by metric, and the note that states the rule.
    Metrics logged without per-class values keep their logged average. Under ``dhc`` the
    records come back unchanged, with no note.
    """
    if contract == "dhc":
        return records, {}, ""
    records = records.copy()
    foreground = [c for c in class_names if c != "background"]
    chosen: dict[str, list[str]] = {}
    for metric in shown:
        prefix = f"{contract}/{metric}/"
        if not any(f"{prefix}{c}" in records for c in foreground):
            continue
        classes = common_classes(records, class_names, prefix)
        chosen[metric] = classes
        keys = [f"{prefix}{c}" for c in classes]
        records[f"{contract}/{metric}_mean"] = (records[keys].mean(axis=1) if keys
                                                else np.nan)
    if not chosen:
        return records, chosen, ""
    parts = "; ".join(_phrase(AVERAGE_HEADERS[m], c, foreground) for m, c in chosen.items())
    note = ("Averages: over the same classes for every row, those defined (not n/a) in"
            f" every seed run of this table ({contract} contract) — {parts}.")
    return records, chosen, note
