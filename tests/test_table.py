"""The paper-style table: aggregation over seeds (population std), ranking, golden renders."""

from __future__ import annotations

import pandas as pd

from dhcbench.reports.table import build_table, to_csv, to_latex, to_markdown

CLASSES = ("background", "spleen", "liver")


def records() -> pd.DataFrame:
    rows = []
    for method, family, dice, asd in (
        ("cps", "general", [30.0, 34.0], [40.0, 42.0]),
        ("dhc", "ours", [48.0, 50.0], [10.0, 12.0]),
        ("crest", "imbalance", [38.0, 38.0], [20.0, 22.0]),
    ):
        for seed, (d, a) in enumerate(zip(dice, asd, strict=True)):
            rows.append({"method": method, "family": family, "dataset": "toy", "ratio": 0.2,
                         "seed": str(seed), "dice_mean": d, "asd_mean": a,
                         "dice/spleen": d + 1.0, "dice/liver": d - 1.0})
    return pd.DataFrame(rows)


GOLDEN_MD = """**toy**

| Method | n | Avg. Dice | Avg. ASD | Sp | Li |
|:---|--:|--:|--:|--:|--:|
| *General* | | | | | |
| cps | 2 | 32.00±2.00 | 41.00±1.00 | 33.0±2.0 | 31.0±2.0 |
| *Imbalance* | | | | | |
| crest | 2 | <u>38.00±0.00</u> | <u>21.00±1.00</u> | <u>39.0±0.0</u> | <u>37.0±0.0</u> |
| *Ours* | | | | | |
| dhc | 2 | **49.00±1.00** | **11.00±1.00** | **50.0±1.0** | **48.0±1.0** |
"""


def test_markdown_golden() -> None:
    table = build_table(records(), CLASSES, "toy")
    assert to_markdown(table) == GOLDEN_MD


def test_latex_marks_best_and_second() -> None:
    tex = to_latex(build_table(records(), CLASSES, "toy"))
    assert r"\textbf{49.00$\pm$1.00}" in tex
    assert r"\underline{21.00$\pm$1.00}" in tex
    assert r"\begin{tabular}{lccccc}" in tex and r"\bottomrule" in tex
    assert r"\multicolumn{6}{l}{\textit{Imbalance}} \\" in tex


def test_csv_has_numbers_and_missing_cells_dash() -> None:
    df = records()
    df = df.drop(columns=["dice/liver"])
    table = build_table(df, CLASSES, "toy")
    assert "–" in to_markdown(table)
    out = pd.read_csv(pd.io.common.StringIO(to_csv(table)))
    assert list(out.columns[:6]) == ["method", "family", "kind", "n", "Avg. Dice_mean",
                                     "Avg. Dice_std"]
    assert out.loc[out.method == "dhc", "Avg. Dice_std"].item() == 1.0  # population std


def test_equal_columns_are_not_marked_and_two_rows_mark_only_the_best() -> None:
    df = records()
    df = df[df.method != "crest"].copy()
    df["dice/liver"] = 0.0
    md = to_markdown(build_table(df, CLASSES, "toy"))
    dhc = next(line for line in md.splitlines() if line.startswith("| dhc"))
    cps = next(line for line in md.splitlines() if line.startswith("| cps"))
    assert "**49.00±1.00**" in dhc and "<u>" not in cps
    assert dhc.endswith("| 0.0±0.0 |") and cps.endswith("| 0.0±0.0 |")
