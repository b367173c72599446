"""Reports from real (tiny) runs through the CLI: table with the published rows and paired
statistics, every figure kind, and predictions written back on the source grid."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dhcbench.datasets.phantom import PhantomConfig, generate_case

from .conftest import invoke_on as invoke


@pytest.fixture(scope="module")
def runs(finished_runs: dict[str, object]) -> dict[str, object]:
    return finished_runs


def child(runs: dict, method: str, seed: str = "0"):
    return next(c for c in runs["children"]
                if c.data.tags["method"] == method and c.data.tags["seed"] == seed)


def test_table_with_paper_rows_and_baseline_statistics(runs: dict) -> None:
    out = Path(runs["work"]) / "tables"
    res = invoke(runs, "table", "--with-paper", "--baseline", "cps", "--format", "md",
                 "--out", str(out))
    assert res.exit_code == 0, res.output
    text = res.output
    for needle in ("| cps (paper) |  | 33.55±3.70 | 41.21±9.10 |", "| dhc (paper) |",
                   "| dhc Δ |", "Tail-4 Dice", "paired Wilcoxon p < 0.05 against cps",
                   "the phantom is synthetic"):
        assert needle in text, needle
    csv = pd.read_csv(out / "table_phantom_20p_dhc_dice_best_paper_vs-cps.csv")
    dhc = csv[(csv.method == "dhc") & (csv.kind == "ours")].iloc[0]
    assert dhc["pairs"] == 4  # 2 test cases × 2 seeds (tiny phantom)
    assert 0.0 <= dhc["wilcoxon_p"] <= 1.0 and dhc["ci95_low"] <= dhc["mean_diff"] <= dhc[
        "ci95_high"]
    assert set(csv.kind) == {"ours", "paper", "delta"}
    res = invoke(runs, "table", "--baseline", "nope", "--out", str(out))
    assert res.exit_code == 2 and "unknown method 'nope'" in res.stderr


@pytest.mark.parametrize("kind", ["weights", "classes", "slices", "curves"])
def test_every_figure_kind_writes_png_and_pdf(runs: dict, kind: str, tmp_path: Path) -> None:
    ids = [child(runs, "dhc").info.run_id]
    if kind in ("classes", "slices"):
        ids.append(child(runs, "cps").info.run_id)
    args = ["plot", kind, "--out", str(tmp_path)]
    for run_id in ids:
        args += ["--run", run_id]
    res = invoke(runs, *args)
    assert res.exit_code == 0, res.output
    files = sorted(tmp_path.iterdir())
    assert {p.suffix for p in files} == {".png", ".pdf"}
    assert all(p.stat().st_size > 5000 for p in files)


def test_plot_refuses_a_parent_run(runs: dict, tmp_path: Path) -> None:
    parent = child(runs, "dhc").data.tags["mlflow.parentRunId"]
    res = invoke(runs, "plot", "weights", "--run", parent, "--out", str(tmp_path))
    assert res.exit_code == 2 and "is a parent run" in res.stderr


def test_predict_writes_label_maps_on_the_source_grid(runs: dict, tmp_path: Path) -> None:
    image, _ = generate_case(PhantomConfig(volume_size=(20, 40, 40), num_cases=10), 3)
    # A source with another grid and orientation than the training volumes.
    source = np.transpose(image, (2, 1, 0))[:, :36, :]
    affine = np.array([[-0.8, 0, 0, 120.0], [0, 0.9, 0, -30.0], [0, 0, 2.5, 14.0],
                       [0, 0, 0, 1]])
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(source.astype(np.int16), affine), str(tmp_path / "in" / "x.nii.gz"))
    res = invoke(runs, "predict", "--run", child(runs, "dhc").info.run_id, "--images",
                 str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    pred = nib.load(str(tmp_path / "out" / "x.nii.gz"))
    assert pred.shape == source.shape
    assert np.allclose(pred.affine, affine)
    data = np.asarray(pred.dataobj)
    assert data.dtype == np.uint8 and data.max() < 14
    assert os.path.getsize(tmp_path / "out" / "x.nii.gz") > 0


def test_reading_tables_does_not_load_torch() -> None:
    """`dhcbench table` only reads MLflow: importing its module must not import torch (about
    2 s of every table command)."""
    import subprocess
    import sys

    code = "import sys, dhcbench.reports.cli_table; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
