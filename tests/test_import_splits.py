"""The shipped split manifests (pinned hashes, the reference's lists), ``dhcbench splits
show|verify``, and the leakage guards tripping on crafted overlaps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dhcbench.cli import app
from dhcbench.datasets.base import DatasetSpec
from dhcbench.datasets.loaders import PatchSampler
from dhcbench.datasets.manifests import MANIFEST_NAMES, load_manifest
from dhcbench.datasets.splits import Split, resolve_split
from dhcbench.datasets.storage import PreparedCase, write_prepared
from dhcbench.errors import UserError

from .fake_datasets import reference_list

runner = CliRunner()

PINNED = {
    "synapse:dhc2023": "829ea8d2ee308bb5aee694c080b6b324cbc628488d090380068d6932a69ff187",
    "synapse:dhc2024": "9bedfc3645d8006c23dc481b4333302001629dc2a0e846f20b375b03b866a593",
    "amos:dhc": "ae6ee2a00e758f44ecf00f61b875788695758c644f85beed80b54327b0625190",
}


def test_manifest_hashes_are_pinned() -> None:
    assert MANIFEST_NAMES == tuple(PINNED)
    for name, sha in PINNED.items():
        assert load_manifest(name).sha256() == sha
        assert load_manifest(name).sha256() == sha  # stable across loads
    # the AMOS 20 % lists, admitted explicitly, are part of the hashed content
    admitted = load_manifest("amos:dhc", allow_inconsistent=True)
    assert admitted.sha256() == (
        "58677872d9a128ee2d3bc4fe64a3217be9265faa970943a30e007553db2a3502")
    # any change of a list changes the hash
    m = load_manifest("synapse:dhc2023")
    assert dataclasses.replace(m, test=m.test[:-1]).sha256() != PINNED["synapse:dhc2023"]


def test_manifests_hold_the_reference_lists() -> None:
    syn = load_manifest("synapse:dhc2023")
    assert syn.train == ("0001", "0002", "0003", "0005", "0008", "0009", "0021", "0022", "0023",
                         "0024", "0027", "0028", "0029", "0030", "0031", "0032", "0034", "0037",
                         "0038", "0039")
    assert syn.eval == ("0006", "0025", "0026", "0040")
    assert syn.test == ("0004", "0007", "0010", "0033", "0035", "0036")
    assert syn.labeled == {"10p": ("0023", "0028"), "20p": ("0002", "0023", "0034", "0039"),
                           "40p": ("0002", "0009", "0021", "0023", "0027", "0031", "0032",
                                   "0037")}
    new = load_manifest("synapse:dhc2024")
    assert new.test == ("0008", "0027", "0029", "0033", "0037", "0039")
    assert new.train == () and new.eval == () and new.labeled == {}
    # 5 of the 2024 test ids were 2023 training cases (reference §2.4): never mixed
    assert set(new.test) & set(syn.train) == {"0008", "0027", "0029", "0037", "0039"}
    amos = load_manifest("amos:dhc")
    assert (len(amos.train), len(amos.eval), len(amos.test)) == (216, 24, 120)
    assert {t: len(v) for t, v in amos.labeled.items()} == {"2p": 4, "5p": 10, "10p": 21}
    assert amos.labeled["2p"] == ("amos_0017", "amos_0077", "amos_0358", "amos_0361")
    assert list(amos.labeled["5p"]) == reference_list("amos", "labeled_5p")
    assert list(amos.refused) == ["20p"] and "inconsistent" in amos.refused["20p"]
    for tag, ids in amos.labeled.items():
        assert set(ids) <= set(amos.train), tag
        unlabeled = reference_list("amos", f"unlabeled_{tag}")
        assert sorted(set(amos.train) - set(ids)) == unlabeled, tag
    with pytest.raises(UserError, match="unknown split manifest 'synapse:dhc2022'"):
        load_manifest("synapse:dhc2022")


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines at the terminal width


def test_splits_show_prints_the_labeled_ids_and_the_hash(tmp_path: Path) -> None:
    res = runner.invoke(app, ["splits", "show", "synapse:dhc2023", "--ratio", "0.2",
                              "--data", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = _flat(res.output)
    assert f"synapse:dhc2023 20p sha256 {PINNED['synapse:dhc2023']}" in out
    assert "labeled (4): 0002 0023 0034 0039 " in out + " "
    assert "test (6): 0004 0007 0010 0033 0035 0036" in out
    assert "synapse is not prepared here" in out
    res = runner.invoke(app, ["splits", "show", "amos:dhc", "--ratio", "0.05", "--data",
                              str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"labeled (10): {' '.join(reference_list('amos', 'labeled_5p'))}" in _flat(
        res.output)


def test_splits_show_refuses_amos_20p(tmp_path: Path) -> None:
    res = runner.invoke(app, ["splits", "show", "amos:dhc", "--ratio", "0.2", "--data",
                              str(tmp_path)])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: amos:dhc 20p: ")
    assert "inconsistent" in err


def test_splits_verify(tmp_path: Path) -> None:
    res = runner.invoke(app, ["splits", "verify", "amos:dhc", "--data", str(tmp_path)])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("ok: ")]
    assert lines[0] == ("ok: amos:dhc: lists disjoint, labeled lists inside train"
                        " (sha256 ae6ee2a00e758f44)")
    assert lines[1].startswith("ok: amos:dhc: 20p refused — ")
    assert "inconsistent" in lines[1]
    assert lines[2] == "ok: amos:dhc: dataset not prepared here; ids not checked against data"
    for name in ("synapse:dhc2023", "synapse:dhc2024"):
        res = runner.invoke(app, ["splits", "verify", name, "--data", str(tmp_path)])
        assert res.exit_code == 0, res.output
        assert f"(sha256 {PINNED[name][:16]})" in res.output
    res = runner.invoke(app, ["splits", "verify", "amos:dhc2", "--data", str(tmp_path)])
    assert res.exit_code == 2 and "not a split manifest" in res.stderr


# -- leakage guards ----------------------------------------------------------------------------

GOOD = dict(train=("a", "b", "c", "d"), eval=("e",), test=("f", "g"), labeled=("a",),
            unlabeled=("b", "c", "d"), source="test")


def test_a_clean_split_passes_and_hashes_stably() -> None:
    split = Split(**GOOD)
    split.check("toy")
    assert split.sha256() == Split(**GOOD).sha256()
    assert split.sha256() != Split(**{**GOOD, "eval": ("e", "h")}).sha256()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eval": ("e", "b")}, "toy: splits train and eval overlap in 1 case(s), e.g. b"),
        ({"test": ("f", "a", "c")}, "toy: splits train and test overlap in 2 case(s), e.g. a"),
        ({"test": ("f", "e")}, "toy: splits eval and test overlap in 1 case(s), e.g. e"),
        ({"unlabeled": ("a", "b", "c", "d")},
         "toy: splits labeled and unlabeled overlap in 1 case(s), e.g. a"),
        ({"train": ("a", "b", "c", "d", "b")}, "toy: split train lists b twice"),
        ({"labeled": (), "unlabeled": ("a", "b", "c", "d")}, "toy: the labeled set is empty"),
        ({"unlabeled": ("b", "c")},
         "toy: labeled and unlabeled lists do not make up the train list"),
        ({"labeled": ("a", "f"), "unlabeled": ("b", "c", "d")},
         "toy: labeled and unlabeled lists do not make up the train list"),
    ],
    ids=["train-eval", "train-test", "eval-test", "labeled-unlabeled", "duplicate",
         "empty-labeled", "unlabeled-missing", "labeled-outside-train"],
)
def test_leakage_guards_trip_on_crafted_overlaps(change: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        Split(**{**GOOD, **change}).check("toy")
    assert str(info.value) == message


def _toy_dataset(path: Path, splits: dict[str, list[str]]):
    def cases():
        for i in range(10):
            label = np.zeros((4, 6, 6), np.uint8)
            label[1:3, 1:4, 1:4] = 1 + i % 2
            yield PreparedCase(f"c{i}", np.full((4, 6, 6), float(i), np.float32), label,
                               (1.0, 1.0, 1.0))

    return write_prepared(path, name="toy", class_names=("bg", "a", "b"), profile="native",
                          cases=cases(), splits=splits)


IDS = [f"c{i}" for i in range(10)]


def test_resolve_split_trips_on_overlapping_prepared_lists(tmp_path: Path) -> None:
    ok = _toy_dataset(tmp_path / "ok", {"train": IDS[:6], "eval": IDS[6:8], "test": IDS[8:],
                                        "labeled_50p": IDS[:3]})
    split = resolve_split(ok, 0.5)
    assert split.labeled == tuple(IDS[:3]) and split.unlabeled == tuple(IDS[3:6])
    overlap = _toy_dataset(tmp_path / "overlap", {"train": IDS[:6], "eval": IDS[6:8],
                                                  "test": [IDS[8], IDS[9], IDS[2]]})
    with pytest.raises(UserError, match="toy: splits train and test overlap in 1 case"):
        resolve_split(overlap, 0.5)
    leaky = _toy_dataset(tmp_path / "leaky", {"train": IDS[:6], "eval": IDS[6:8],
                                              "test": IDS[8:], "labeled_50p": [IDS[0], IDS[9]]})
    with pytest.raises(UserError, match="do not make up the train list"):
        resolve_split(leaky, 0.5)  # a labeled test case
    with pytest.raises(UserError, match=r"split manifest synapse:dhc2023: 30 id\(s\) are not"):
        resolve_split(ok, 0.2, manifest="synapse:dhc2023")


def test_the_unlabeled_stream_never_opens_a_label_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _toy_dataset(tmp_path / "toy", {"train": IDS[:6], "eval": IDS[6:8], "test": IDS[8:],
                                         "labeled_50p": IDS[:2]})
    split = resolve_split(ds, 0.5)
    opened: list[str] = []
    real = type(ds).label
    monkeypatch.setattr(type(ds), "label",
                        lambda self, cid: opened.append(cid) or real(self, cid))
    spec = DatasetSpec("toy", ds.class_names, 1, (4, 4, 4), None, "native")
    sampler = PatchSampler(ds, spec, split.labeled, split.unlabeled, batch_labeled=2,
                           batch_unlabeled=2, flip=True, seed=0)
    seen_u = set()
    for lab_idx, unl_idx in sampler.plan_epoch():
        batch = sampler.batch(lab_idx, unl_idx)
        assert tuple(batch.image_u.shape) == (len(unl_idx), 1, 4, 4, 4)
        assert tuple(batch.label_l.shape) == (len(lab_idx), 4, 4, 4)
        seen_u |= {split.unlabeled[i] for i in unl_idx}
    assert seen_u == set(split.unlabeled)
    assert sorted(set(opened)) == sorted(split.labeled)
