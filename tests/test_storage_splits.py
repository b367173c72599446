"""Prepared-dataset storage (atomic writes, manifest) and split resolution with its guards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dhcbench.datasets.splits import Split, labeled_count, ratio_tag, resolve_split
from dhcbench.datasets.storage import PreparedCase, load_prepared, write_prepared
from dhcbench.errors import UserError

CLASSES = ("background", "a", "b")


def cases(n: int, bad_at: int | None = None):
    rng = np.random.default_rng(0)
    for i in range(n):
        label = rng.integers(0, 3, size=(4, 5, 6))
        if i == bad_at:
            label[0, 0, 0] = 7
        yield PreparedCase(f"c{i:02d}", rng.normal(size=(4, 5, 6)).astype(np.float32), label,
                           (2.0, 1.0, 1.0))


def splits(ids: list[str]) -> dict[str, list[str]]:
    return {"train": ids[:6], "eval": ids[6:8], "test": ids[8:10],
            "labeled_50p": ids[:3]}


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    ids = [f"c{i:02d}" for i in range(10)]
    ds = write_prepared(tmp_path / "ds", name="toy", class_names=CLASSES, profile="native",
                        cases=cases(10), splits=splits(ids))
    again = load_prepared(tmp_path / "ds")
    assert again.cases == ds.cases and again.splits == ds.splits
    rec = ds.cases["c03"]
    label = np.asarray(ds.label("c03"))
    assert rec.class_counts == tuple(np.bincount(label.ravel(), minlength=3))
    assert ds.image("c03").dtype == np.float32 and label.dtype == np.uint8
    assert (tmp_path / "ds" / "splits" / "train.txt").read_text().split() == ids[:6]
    assert ds.class_counts(["c00", "c01"]).sum() == 2 * 4 * 5 * 6


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    ids = [f"c{i:02d}" for i in range(10)]
    with pytest.raises(UserError, match="case c04: label values outside 0..2"):
        write_prepared(tmp_path / "ds", name="toy", class_names=CLASSES, profile="native",
                       cases=cases(10, bad_at=4), splits=splits(ids))
    assert list(tmp_path.iterdir()) == []


def test_split_with_unknown_ids_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="names ids not in the data"):
        write_prepared(tmp_path / "ds", name="toy", class_names=CLASSES, profile="native",
                       cases=cases(3), splits={"train": ["c00", "zz"]})
    assert list(tmp_path.iterdir()) == []


def test_ratio_helpers() -> None:
    assert [ratio_tag(r) for r in (0.1, 0.2, 0.05, 0.025)] == ["10p", "20p", "5p", "2.5p"]
    # int(N * r) as the reference, robust to float round-off (20 * 0.3 = 6.000000000000001)
    assert [labeled_count(20, r) for r in (0.1, 0.2, 0.3, 0.4)] == [2, 4, 6, 8]
    assert [labeled_count(216, r) for r in (0.02, 0.05, 0.1)] == [4, 10, 21]


def test_resolve_split_uses_shipped_lists_then_seeded(tmp_path: Path) -> None:
    ids = [f"c{i:02d}" for i in range(10)]
    ds = write_prepared(tmp_path / "ds", name="toy", class_names=CLASSES, profile="native",
                        cases=cases(10), splits=splits(ids))
    s = resolve_split(ds, 0.5)
    assert s.labeled == tuple(ids[:3]) and s.source == "toy:labeled_50p"
    assert set(s.labeled) | set(s.unlabeled) == set(ids[:6])
    seeded = resolve_split(ds, 0.5, split_seed=3)
    assert len(seeded.labeled) == 3 and "seeded" in seeded.source
    assert resolve_split(ds, 0.5, split_seed=3).labeled == seeded.labeled
    with pytest.raises(UserError, match="0 labeled cases"):
        resolve_split(ds, 0.1)
    with pytest.raises(UserError, match="no unlabeled data"):
        resolve_split(ds, 1.0)


def test_leakage_guard_trips_on_overlap() -> None:
    split = Split(train=("a", "b", "c"), eval=("c",), test=("d",), labeled=("a",),
                  unlabeled=("b", "c"), source="x")
    with pytest.raises(UserError, match="train and eval overlap"):
        split.check("toy")
    split = Split(train=("a", "b"), eval=("e",), test=("d",), labeled=("a", "b"),
                  unlabeled=("b",), source="x")
    with pytest.raises(UserError, match="labeled and unlabeled overlap"):
        split.check("toy")
