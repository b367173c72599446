"""Reports: golden renders with the published rows and statistics marks, the statistics
against scipy, and the paper-results lookup (the figures: test_figures.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from dhcbench.reports.paper import paper_row
from dhcbench.reports.stats import case_means, paired_test
from dhcbench.reports.table import build_table, tail_classes, to_html, to_latex, to_markdown

CLASSES = ("background", "spleen", "liver", "gallbladder")


def records() -> pd.DataFrame:
    rows = []
    for method, family, dice in (("cps", "general", [30.0, 34.0]), ("dhc", "ours", [48.0, 50.0])):
        for seed, d in enumerate(dice):
            rows.append({"method": method, "method_key": method, "family": family,
                         "dataset": "synapse", "ratio": 0.2, "seed": str(seed),
                         "dice_mean": d, "asd_mean": 60 - d, "dice/spleen": d + 2,
                         "dice/liver": d + 20, "dice/gallbladder": d - 10})
    return pd.DataFrame(rows)


GOLDEN_MD = """**t**

| Method | n | Avg. Dice | Avg. ASD | Tail-2 Dice | Sp | Li | Ga |
|:---|--:|--:|--:|--:|--:|--:|--:|
| *General* | | | | | | | |
| cps | 2 | 32.00±2.00 | 28.00±2.00 | 28.00±2.00 | 34.0±2.0 | 52.0±2.0 | 22.0±2.0 |
| cps (paper) |  | 33.55±3.70 | 41.21±9.10 | – | – | – | – |
| cps Δ |  | -1.55 | -13.21 | – | – | – | – |
| *Ours* | | | | | | | |
| dhc | 2 | **49.00±1.00†** | **11.00±1.00** | **45.00±1.00** | **51.0±1.0** | **69.0±1.0** | **39.0±1.0** |
| dhc (paper) |  | 48.61±0.90 | 10.71±2.60 | 64.40 | 62.8 | 85.2 | 66.0 |
| dhc Δ |  | +0.39 | +0.29 | -19.40 | -11.8 | -16.2 | -27.0 |

(paper): the published row (paper-results.csv; per-class values missing from the extraction show '–'); Δ: ours minus paper.
"""  # noqa: E501


def golden_table():
    paper = {m: paper_row("synapse", 0.2, m) for m in ("cps", "dhc")}
    return build_table(records(), CLASSES, "t", tail=["gallbladder", "spleen"], paper=paper,
                       marks={"dhc": "†"})


def test_markdown_golden_with_paper_rows_tail_and_marks() -> None:
    assert to_markdown(golden_table()) == GOLDEN_MD


def test_latex_and_html_marking() -> None:
    tex = to_latex(golden_table())
    assert r"\textbf{49.00$\pm$1.00$^\dagger$}" in tex
    assert r"dhc $\Delta$ &  & +0.39 & +0.29" in tex
    assert r"\multicolumn{8}{l}{\textit{Ours}} \\" in tex
    page = to_html(golden_table())
    assert "<td><b>49.00±1.00†</b></td>" in page and "<caption>t</caption>" in page


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex is not installed (CI installs texlive-latex-recommended)")
def test_latex_table_compiles(tmp_path: Path) -> None:
    body = to_latex(golden_table())
    doc = ("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
           "\\usepackage[utf8]{inputenc}\n\\begin{document}\n" + body + "\\end{document}\n")
    (tmp_path / "t.tex").write_text(doc)
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


def test_tail_classes_are_the_least_labeled() -> None:
    assert tail_classes(CLASSES, [900, 50, 400, 5], 2) == ["gallbladder", "spleen"]
    assert tail_classes(CLASSES, [900, 7, 7, 7], 2) == ["spleen", "liver"]  # ties: class order


def test_paired_statistics_match_scipy_and_a_manual_bootstrap() -> None:
    rng = np.random.default_rng(3)
    index = pd.MultiIndex.from_product([["0", "1"], [f"c{i}" for i in range(15)]],
                                       names=["seed", "case"])
    base = pd.Series(rng.uniform(20, 60, len(index)), index=index)
    method = base + rng.normal(3.0, 4.0, len(index))
    res = paired_test(method, base.iloc[:-3], n_boot=2000, seed=7)  # only common pairs count
    common = method.iloc[:-3]
    ref = scipy_stats.wilcoxon(common.to_numpy(), base.iloc[:-3].to_numpy())
    assert res.n_pairs == 27
    assert res.p_value == pytest.approx(ref.pvalue) and res.wilcoxon_stat == ref.statistic
    diff = (common - base.iloc[:-3]).to_numpy()
    assert res.mean_diff == pytest.approx(diff.mean())
    boot = diff[np.random.default_rng(7).integers(0, 27, size=(2000, 27))].mean(axis=1)
    assert (res.ci_low, res.ci_high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    assert res.ci_low < res.mean_diff < res.ci_high


def test_case_means_average_classes_per_case_and_seed() -> None:
    rows = pd.DataFrame({
        "case": ["a", "a", "b", "b", "a"], "class": ["x", "y", "x", "y", "x"],
        "contract": ["dhc"] * 4 + ["rigorous"], "metric": ["dice"] * 5,
        "value": [10.0, 30.0, 50.0, 70.0, 99.0], "seed": ["0"] * 5,
    })
    means = case_means(rows, "dhc")
    assert means[("0", "a")] == 20.0 and means[("0", "b")] == 60.0


def test_paper_lookup_keeps_incomplete_rows_to_their_averages() -> None:
    cps = paper_row("synapse", 0.2, "cps")
    assert cps is not None and cps.avg_dice == 33.55 and cps.dice == {}
    fully = paper_row("amos", 0.05, "fully")
    assert fully is not None and fully.dice["prostate_uterus"] == 58.3
    assert "portal_splenic_veins" not in fully.dice
    assert paper_row("synapse", 0.3, "dhc") is None
