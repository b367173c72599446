"""``dhcbench evaluate`` on NIfTI label maps: tidy CSV, matching by case id, bad input."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from medpy.metric import binary as mb
from typer.testing import CliRunner

from dhcbench.cli import app

runner = CliRunner()


def save(path: Path, data: np.ndarray, zooms=(1.5, 1.0, 2.0)) -> None:
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms)
    nib.save(img, str(path))


def label_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = np.zeros((16, 20, 12), dtype=np.uint8)
    gt[3:10, 4:15, 2:9] = 6  # "liver"
    gt[11:14, 2:6, 3:6] = 1  # "spleen"
    pred = gt.copy()
    pred[3:5, 4:15, 2:9] = 0
    pred[rng.integers(0, 16), rng.integers(0, 20), rng.integers(0, 12)] = 8  # stray "aorta"
    return pred, gt


def test_folder_evaluation_writes_tidy_csv(tmp_path: Path) -> None:
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for i in range(2):
        pred, gt = label_pair(i)
        save(tmp_path / "pred" / f"case{i}.nii.gz", pred)
        save(tmp_path / "gt" / f"case{i}.nii.gz", gt)
    out = tmp_path / "m.csv"
    res = runner.invoke(app, ["evaluate", "--pred", str(tmp_path / "pred"),
                              "--gt", str(tmp_path / "gt"), "--dataset", "phantom",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert list(df.columns) == ["case", "class", "contract", "metric", "value"]
    assert set(df["case"]) == {"case0", "case1"}
    assert set(df["contract"]) == {"dhc", "rigorous"}
    pred, gt = label_pair(0)
    row = df[(df.case == "case0") & (df["class"] == "liver")]
    dice = row[(row.contract == "dhc") & (row.metric == "dice")].value.item()
    assert dice == pytest.approx(100 * mb.dc(pred == 6, gt == 6))
    assd = row[(row.contract == "rigorous") & (row.metric == "asd")].value.item()
    assert assd == pytest.approx(mb.assd(pred == 6, gt == 6, voxelspacing=(1.5, 1.0, 2.0)))
    # a class absent in both: dhc Dice 1 (the reference's quirk), rigorous undefined
    absent = df[(df.case == "case0") & (df["class"] == "pancreas")]
    assert absent[(absent.contract == "dhc") & (absent.metric == "dice")].value.item() == 1.0
    rigorous = absent[(absent.contract == "rigorous") & (absent.metric == "dice")]
    assert np.isnan(rigorous.value.item())


def _err(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    pred, gt = label_pair(0)
    save(tmp_path / "p.nii.gz", pred)
    save(tmp_path / "g.nii.gz", gt[:, :, :10])
    out = tmp_path / "m.csv"
    res = runner.invoke(app, ["evaluate", "--pred", str(tmp_path / "p.nii.gz"),
                              "--gt", str(tmp_path / "g.nii.gz"), "--out", str(out)])
    assert "p.nii.gz" in _err(res) and "differs from the ground truth" in res.stderr
    assert not out.exists()

    save(tmp_path / "f.nii.gz", pred.astype(np.float32) + 0.5)
    res = runner.invoke(app, ["evaluate", "--pred", str(tmp_path / "f.nii.gz"),
                              "--gt", str(tmp_path / "g.nii.gz"), "--out", str(out)])
    assert "f.nii.gz: label values are not integers" in _err(res)

    save(tmp_path / "big.nii.gz", np.full((4, 4, 4), 40, dtype=np.uint8))
    res = runner.invoke(app, ["evaluate", "--pred", str(tmp_path / "big.nii.gz"),
                              "--gt", str(tmp_path / "g.nii.gz"), "--out", str(out)])
    assert "outside the class range 0..13" in _err(res)

    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    res = runner.invoke(app, ["evaluate", "--pred", str(tmp_path / "broken.nii.gz"),
                              "--gt", str(tmp_path / "g.nii.gz"), "--out", str(out)])
    assert "broken.nii.gz: unreadable NIfTI file" in _err(res)

    res = runner.invoke(app, ["evaluate", "--pred", str(tmp_path / "missing"),
                              "--gt", str(tmp_path / "g.nii.gz"), "--out", str(out)])
    assert "does not exist" in _err(res)
    assert not out.exists()


def test_unmatched_case_ids(tmp_path: Path) -> None:
    for sub in ("pred", "gt"):
        (tmp_path / sub).mkdir()
    pred, gt = label_pair(0)
    save(tmp_path / "pred" / "a.nii.gz", pred)
    save(tmp_path / "gt" / "b.nii.gz", gt)
    res = runner.invoke(app, ["evaluate", "--pred", str(tmp_path / "pred"),
                              "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "m.csv")])
    assert "no ground truth with case id 'a'" in _err(res)
