"""``dhcbench prepare`` on tiny fake datasets in every raw layout (synapse, its imagesTr
variant, amos, nnunet v1/v2, dhc-npy): geometry profiles, spacing, modality, class names,
carried-over splits; then one short ``dhcbench run`` per layout, tracked in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from dhcbench.cli import app
from dhcbench.datasets.classes import SYNAPSE_CLASSES
from dhcbench.datasets.splits import resolve_split
from dhcbench.datasets.storage import PreparedCase, load_prepared, write_prepared
from dhcbench.errors import UserError

from .fake_datasets import (
    SIZE,
    SPACING,
    case,
    make_amos,
    make_dhc_npy,
    make_nnunet,
    make_synapse,
    reference_ids,
    reference_list,
    write_nifti,
)

runner = CliRunner()

SYNAPSE_IDS = reference_ids("synapse-2023")
AMOS_TR = reference_ids("amos", ("train", "eval"))
AMOS_VA = reference_list("amos", "test")

# One epoch of two iterations with 4-filter V-Nets on 16×32×32 patches; only the best
# checkpoint is tested and no checkpoint artifact is logged (speed).
TINY_RUN = ["--epochs", "1"] + [
    a for s in ("data.patch_size=[16,32,32]", "train.base_filters=4", "train.iters_per_epoch=2",
                "eval.window_batch=8", "eval.test_last=false", "tracking.log_checkpoint=false",
                "train.threads=1")
    for a in ("--set", s)
]


def prepare(*args: str, expect: int = 0):
    res = runner.invoke(app, ["prepare", *args])
    assert res.exit_code == expect, res.output
    return res


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module's runs (its tables are created once)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def train(uri: str, experiment: str, dataset: str, ratio: float, *extra: str):
    """One seed of DHC through the CLI; returns the FINISHED child run."""
    res = runner.invoke(app, ["run", "--method", "dhc", "--dataset", dataset, "--ratio",
                              str(ratio), "--experiment", experiment, *TINY_RUN,
                              "--set", f"tracking.uri={uri}", *extra])
    assert res.exit_code == 0, res.output
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("dhcbench.role") == "seed"]
    parents = [r for r in runs if r.data.tags.get("dhcbench.role") == "parent"]
    assert len(children) == 1 and len(parents) == 1
    child = children[0]
    assert child.info.status == "FINISHED" and parents[0].info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert child.data.tags["dataset"] == dataset.split(":")[0]
    assert np.isfinite(child.data.metrics["test/dice_mean"])
    return child


# -- synapse ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_synapse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three fake Synapse cases (img/ + label/), not the reference ids."""
    return make_synapse(tmp_path_factory.mktemp("raw") / "synapse", ["0001", "0002", "0003"])


@pytest.fixture(scope="module")
def synapse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 30 reference Synapse ids, prepared with the native profile."""
    src = make_synapse(tmp_path_factory.mktemp("raw") / "synapse30", SYNAPSE_IDS)
    root = tmp_path_factory.mktemp("synapse-data")
    res = prepare("synapse", "--src", str(src), "--out", str(root), "--profile", "native")
    assert "prepared 30 cases of synapse (13 classes, profile native)" in " ".join(
        res.output.split())
    return root


def _downsample2(a: np.ndarray) -> np.ndarray:
    """Mean of 2×2 in-plane blocks: trilinear (align_corners False) halving of H and W."""
    d, h, w = a.shape
    return a.reshape(d, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


@pytest.mark.parametrize(
    ("profile", "extra", "shape", "spacing"),
    [
        ("dhc2023", [], (80, 160, 160), (2.5 * 12 / 80, 0.8 * 24 / 160, 0.8 * 24 / 160)),
        ("dhc2024", [], (12, 12, 12), (2.5, 1.6, 1.6)),
        ("native", [], SIZE, SPACING),
        ("native", ["--spacing", "5,1.6,1.6"], (6, 12, 12), (5.0, 1.6, 1.6)),
    ],
    ids=["dhc2023", "dhc2024", "native", "native-spacing"],
)
def test_synapse_profiles(tmp_path: Path, small_synapse: Path, profile: str, extra: list[str],
                          shape: tuple[int, int, int], spacing: tuple[float, ...]) -> None:
    res = prepare("synapse", "--src", str(small_synapse), "--out", str(tmp_path),
                  "--profile", profile, *extra)
    assert f"shapes [{shape}]" in " ".join(res.output.split())
    ds = load_prepared(tmp_path / f"synapse-{profile}")
    assert ds.name == "synapse" and ds.profile == profile
    assert ds.class_names == SYNAPSE_CLASSES
    assert sorted(ds.cases) == ["0001", "0002", "0003"]
    for k, cid in enumerate(sorted(ds.cases)):
        rec = ds.cases[cid]
        src_image, src_label = case(k)
        image, label = np.asarray(ds.image(cid)), np.asarray(ds.label(cid))
        assert rec.shape == shape == image.shape == label.shape
        assert image.dtype == np.float32 and label.dtype == np.uint8
        np.testing.assert_allclose(rec.spacing, spacing, rtol=1e-6)
        # The source grid is kept: (i, j, k) = (x, y, z) shape and the file's affine.
        assert rec.source_shape == (24, 24, 12)
        np.testing.assert_allclose(np.asarray(rec.affine), np.diag([0.8, 0.8, 2.5, 1.0]))
        assert rec.class_counts == tuple(np.bincount(label.ravel(), minlength=14))
        assert set(np.unique(label)) <= set(np.unique(src_label))
        assert src_image.min() <= image.min() and image.max() <= src_image.max()
        if profile == "native" and not extra:
            np.testing.assert_array_equal(image, src_image)  # (z, y, x), raw HU
            np.testing.assert_array_equal(label, src_label)
        elif profile == "dhc2024":
            np.testing.assert_array_equal(label, src_label[:, ::2, ::2])  # nearest
            np.testing.assert_allclose(image, _downsample2(src_image), atol=1e-2)
        elif profile == "dhc2023":
            # nearest: resized voxel j takes source voxel floor(j * old / new) on every axis
            idx = [np.floor(np.arange(n) * o / n).astype(int)
                   for n, o in zip(shape, SIZE, strict=True)]
            expected = src_label[np.ix_(*idx)]
            assert (label == expected).mean() > 0.98
            liver = SYNAPSE_CLASSES.index("liver")
            assert abs((label == liver).mean() - (src_label == liver).mean()) < 0.01


def test_synapse_imagestr_variant_gives_the_same_dataset(tmp_path: Path,
                                                         small_synapse: Path) -> None:
    """imagesTr/labelsTr (the reference's naming) and img/label give byte-identical
    manifests; so do two preparations of the same source (stable hashes)."""
    variant = make_synapse(tmp_path / "raw", ["0001", "0002", "0003"], variant="imagesTr")
    for src, out in ((small_synapse, "a"), (small_synapse, "b"), (variant, "c")):
        prepare("synapse", "--src", str(src), "--out", str(tmp_path / out), "--profile", "native")
    texts = [(tmp_path / o / "synapse-native" / "manifest.json").read_text() for o in "abc"]
    assert texts[0] == texts[1] == texts[2]
    ds = load_prepared(tmp_path / "c" / "synapse-native")
    assert len({rec.image_sha256 for rec in ds.cases.values()}) == 3


def test_synapse_default_profile_is_dhc2023(tmp_path: Path, small_synapse: Path) -> None:
    res = prepare("synapse", "--src", str(small_synapse), "--out", str(tmp_path))
    assert "profile dhc2023" in res.output
    ds = load_prepared(tmp_path / "synapse-dhc2023")
    assert {rec.shape for rec in ds.cases.values()} == {(80, 160, 160)}
    assert all(np.load(p, mmap_mode="r").shape == (80, 160, 160)
               for p in sorted((tmp_path / "synapse-dhc2023").glob("*/*.npy")))


def test_synapse_split_seed_draws_from_the_manifest_train_list(
        workdir: Path, synapse_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dhcbench.benchmark.planning import plan_run

    monkeypatch.setenv("DHCBENCH_DATA", str(synapse_root))
    layers = [{"data": {"options": {"profile": "native"}, "split_seed": 3}}]
    split = plan_run("dhc", "synapse", 0.2, [0], layers).split
    shipped = reference_list("synapse-2023", "labeled_20p")
    assert split.source == "synapse:dhc2023:seeded(3)"
    assert list(split.train) == reference_list("synapse-2023", "train")
    assert list(split.test) == reference_list("synapse-2023", "test")
    assert len(split.labeled) == 4 and set(split.labeled) <= set(split.train)
    assert list(split.labeled) != shipped
    ds = load_prepared(synapse_root / "synapse-native")
    assert resolve_split(ds, 0.2, 3, manifest="synapse:dhc2023") == split
    res = runner.invoke(app, ["splits", "show", "synapse:dhc2023", "--ratio", "0.2",
                              "--split-seed", "3", "--profile", "native",
                              "--data", str(synapse_root)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert f"labeled (4): {' '.join(split.labeled)} " in out
    assert f"sha256 {split.sha256()}" in out


def test_synapse_dhc2024_split_never_touches_its_test_ids(synapse_root: Path) -> None:
    ds = load_prepared(synapse_root / "synapse-native")
    test_ids = reference_list("synapse-2024", "test")
    assert test_ids == ["0008", "0027", "0029", "0033", "0037", "0039"]
    trains = set()
    for seed in range(5):
        split = resolve_split(ds, 0.2, seed, manifest="synapse:dhc2024")
        assert list(split.test) == test_ids
        assert not set(test_ids) & (set(split.train) | set(split.eval))
        assert sorted({*split.train, *split.eval, *split.test}) == SYNAPSE_IDS
        assert (len(split.train), len(split.eval), len(split.labeled)) == (20, 4, 4)
        assert set(split.labeled) <= set(split.train)
        assert split.source == f"synapse:dhc2024:seeded({seed})"
        assert resolve_split(ds, 0.2, seed, manifest="synapse:dhc2024") == split
        trains.add(split.train)
    assert len(trains) > 1  # the seed matters


def test_synapse_splits_show_and_verify_on_prepared_data(synapse_root: Path) -> None:
    res = runner.invoke(app, ["splits", "show", "synapse:dhc2023", "--ratio", "0.2",
                              "--profile", "native", "--data", str(synapse_root)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "sha256 be94fb54c6665bf5be4a8d37e963caa91262d9862db045c642805b1173c94b61" in out
    assert "source: synapse:dhc2023:labeled_20p" in out
    assert "labeled (4): 0002 0023 0034 0039" in out
    assert "unlabeled (16):" in out and "labeled voxels per class: Bg " in out
    # synapse:dhc2024 has no labeled lists: the drawn splits are shown and verified.
    res = runner.invoke(app, ["splits", "show", "synapse:dhc2024", "--profile", "native",
                              "--data", str(synapse_root)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    for tag, n in (("10p", 2), ("20p", 4), ("40p", 8)):
        assert f"synapse:dhc2024 {tag} sha256" in out and f"labeled ({n}):" in out
    assert "test (6): 0008 0027 0029 0033 0037 0039" in out
    res = runner.invoke(app, ["splits", "verify", "synapse:dhc2024", "--profile", "native",
                              "--data", str(synapse_root)])
    assert res.exit_code == 0, res.output
    assert "synapse:dhc2024 20p: ids present in synapse-native, guards pass" in " ".join(
        res.output.split())


def test_train_synapse(workdir: Path, synapse_root: Path, tracking_uri: str,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHCBENCH_DATA", str(synapse_root))
    child = train(tracking_uri, "synapse", "synapse", 0.2, "--set", "data.options.profile=native")
    p = child.data.params
    assert p["split.labeled"] == "0002,0023,0034,0039"
    assert p["split.source"] == "synapse:dhc2023:labeled_20p"
    assert p["split.num_unlabeled"] == "16" and p["data.profile"] == "native"
    assert p["split.sha256"] == (
        "be94fb54c6665bf5be4a8d37e963caa91262d9862db045c642805b1173c94b61")
    assert {f"test/dice/{c}" for c in SYNAPSE_CLASSES[1:]} <= set(child.data.metrics)


# -- amos ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def amos_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 360 reference AMOS ids (240 Tr, 120 Va), tiny volumes, native profile."""
    src = make_amos(tmp_path_factory.mktemp("raw") / "amos", AMOS_TR, AMOS_VA)
    root = tmp_path_factory.mktemp("amos-data")
    prepare("amos", "--src", str(src), "--out", str(root), "--profile", "native")
    return root


def test_amos_dhc2024_shape_and_mri_modality(tmp_path: Path) -> None:
    src = make_amos(tmp_path / "raw", ["amos_0001", "amos_0507"], ["amos_0008", "amos_0600"])
    prepare("amos", "--src", str(src), "--out", str(tmp_path), "--profile", "dhc2024")
    ds = load_prepared(tmp_path / "amos-dhc2024")
    assert ds.num_classes == 16 and ds.class_names[-1] == "prostate_uterus"
    assert {cid: rec.modality for cid, rec in ds.cases.items()} == {
        "amos_0001": "CT", "amos_0507": "MR", "amos_0008": "CT", "amos_0600": "MR"}
    for rec in ds.cases.values():
        assert rec.shape == (80, 160, 160)
        np.testing.assert_allclose(rec.spacing, (2.5 * 12 / 80, 0.8 * 24 / 160, 0.8 * 24 / 160))


def test_amos_full_prepared_ids_and_modality(amos_root: Path) -> None:
    ds = load_prepared(amos_root / "amos-native")
    assert sorted(ds.cases) == sorted(AMOS_TR + AMOS_VA) and len(ds.cases) == 360
    mr = sorted(c for c, rec in ds.cases.items() if rec.modality == "MR")
    assert mr == sorted(c for c in ds.cases if int(c.split("_")[1]) >= 500)
    # reference §2.4: MRI counts train 34 / eval 6 / test 20
    split = resolve_split(ds, 0.05, manifest="amos:dhc")
    counts = [sum(c in mr for c in getattr(split, k)) for k in ("train", "eval", "test")]
    assert counts == [34, 6, 20]
    assert sum(c in mr for c in split.labeled) == 3


def test_train_amos_5p_uses_the_reference_labeled_list(
        workdir: Path, amos_root: Path, tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHCBENCH_DATA", str(amos_root))
    child = train(tracking_uri, "amos", "amos", 0.05, "--set", "data.options.profile=native")
    labeled = reference_list("amos", "labeled_5p")
    assert len(labeled) == 10
    p = child.data.params
    assert p["split.labeled"] == ",".join(labeled)
    assert p["split.source"] == "amos:dhc:labeled_5p"
    assert (p["split.num_labeled"], p["split.num_unlabeled"]) == ("10", "206")
    assert p["split.sha256"] == (
        "9a13e54124e66f2aed82d3412a3614043daf063a6a183be230b4ce99c84ddce2")


def test_amos_20p_refused_unless_allowed(workdir: Path, amos_root: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHCBENCH_DATA", str(amos_root))
    res = runner.invoke(app, ["run", "--dataset", "amos", "--ratio", "0.2", *TINY_RUN,
                              "--set", "data.options.profile=native"])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --ratio 0.2: ")
    assert "inconsistent" in err and "data.allow_inconsistent_split=true" in err
    assert not (workdir / "mlflow.db").exists()

    from dhcbench.benchmark.planning import plan_run

    layers = [{"data": {"options": {"profile": "native"}, "allow_inconsistent_split": True}}]
    split = plan_run("dhc", "amos", 0.2, [0], layers).split
    labeled = reference_list("amos", "labeled_20p")
    unlabeled = reference_list("amos", "unlabeled_20p")
    assert list(split.labeled) == labeled and list(split.unlabeled) == unlabeled
    assert (len(split.labeled), len(split.unlabeled), len(split.train)) == (38, 154, 192)
    # the 20 eval ids used by the 20 % lists leave the eval set; the test set is untouched
    assert set(split.eval) == set(reference_list("amos", "eval")) - set(split.train)
    assert len(split.eval) == 4 and list(split.test) == AMOS_VA
    assert split.source == "amos:dhc:labeled_20p"
    ds = load_prepared(amos_root / "amos-native")
    with pytest.raises(UserError, match="inconsistent"):
        resolve_split(ds, 0.2, manifest="amos:dhc")
    assert resolve_split(ds, 0.2, manifest="amos:dhc", allow_inconsistent=True) == split


def test_amos_splits_verify_checks_the_prepared_ids(amos_root: Path) -> None:
    res = runner.invoke(app, ["splits", "verify", "amos:dhc", "--profile", "native",
                              "--data", str(amos_root)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    for tag in ("2p", "5p", "10p"):
        assert f"ok: amos:dhc {tag}: ids present in amos-native, guards pass" in out
    assert "ok: amos:dhc: 20p refused" in out


# -- nnunet ----------------------------------------------------------------------------------


def test_nnunet_v1_dataset_json(tmp_path: Path) -> None:
    src = make_nnunet(tmp_path / "Task09_Spleen", 3, style="v1")
    res = prepare("nnunet", "--src", str(src), "--out", str(tmp_path / "out"))
    assert "profile native" in res.output
    ds = load_prepared(tmp_path / "out" / "nnunet-task09-spleen-native")
    assert ds.class_names == ("background", "spleen")
    assert sorted(ds.cases) == ["spleen_000", "spleen_001", "spleen_002"]
    assert {rec.modality for rec in ds.cases.values()} == {"MR"}
    assert "intensity_window" not in ds.meta and ds.meta["channel_names"] == {"0": "MRI"}
    spleen = SYNAPSE_CLASSES.index("spleen")
    for k, cid in enumerate(sorted(ds.cases)):
        assert ds.cases[cid].class_counts[1] == int((case(k)[1] == spleen).sum()) > 0


def test_nnunet_v2_prepare_and_train(workdir: Path, tmp_path: Path, tracking_uri: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_nnunet(tmp_path / "Dataset042_ToyOrgans", 10, style="v2")
    root = tmp_path / "data"
    prepare("nnunet", "--src", str(src), "--out", str(root))
    ds = load_prepared(root / "nnunet-dataset042-toyorgans-native")
    assert ds.class_names == ("background", "liver", "spleen_whole")
    assert {rec.modality for rec in ds.cases.values()} == {"CT"}
    lo, hi = ds.meta["intensity_window"]  # nnU-Net's 0.5–99.5 % foreground percentiles
    assert -1000 < lo < hi < 1000
    liver, spleen = SYNAPSE_CLASSES.index("liver"), SYNAPSE_CLASSES.index("spleen")
    counts = ds.cases["toy_003"].class_counts
    assert counts[1:] == (int((case(3)[1] == liver).sum()), int((case(3)[1] == spleen).sum()))

    monkeypatch.setenv("DHCBENCH_DATA", str(root))
    child = train(tracking_uri, "nnunet", "nnunet:dataset042-toyorgans", 0.2)
    p = child.data.params
    assert p["split.source"] == "nnunet-dataset042-toyorgans:generated(0)"
    assert (p["split.num_labeled"], p["split.num_unlabeled"]) == ("1", "6")
    assert {"test/dice/liver", "test/dice/spleen_whole"} <= set(child.data.metrics)
    assert child.data.tags["classes"] == "background,liver,spleen_whole"


# -- dhc-npy ---------------------------------------------------------------------------------


def test_dhc_npy_prepare_and_train(workdir: Path, tmp_path: Path, tracking_uri: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"{i:04d}" for i in range(1, 11)]
    splits = {"train": ids[:6], "eval": ids[6:8], "test": ids[8:],
              "labeled_50p": ["0002", "0004", "0005"], "unlabeled_50p": ["0001", "0003", "0006"]}
    src = make_dhc_npy(tmp_path / "synapse_data", ids, splits)
    root = tmp_path / "data"
    prepare("dhc-npy", "--src", str(src), "--out", str(root), "--task", "synapse")
    path = root / "synapse-dhcnpy"
    ds = load_prepared(path)
    assert ds.profile == "dhcnpy" and ds.class_names == SYNAPSE_CLASSES
    assert ds.splits == splits  # taken as they are
    assert sorted(p.name for p in (path / "splits").iterdir()) == sorted(
        f"{k}.txt" for k in splits)
    for k, cid in enumerate(ids):
        assert ds.cases[cid].spacing == (1.0, 1.0, 1.0) and ds.cases[cid].shape == SIZE
        np.testing.assert_array_equal(ds.label(cid), case(k)[1])
        np.testing.assert_array_equal(ds.image(cid), case(k)[0])

    # The unlabeled stream never opens a label file: without them the run still works.
    for cid in splits["unlabeled_50p"]:
        (path / "labels" / f"{cid}.npy").unlink()
    monkeypatch.setenv("DHCBENCH_DATA", str(root))
    child = train(tracking_uri, "dhcnpy", "synapse", 0.5, "--set", "data.options.profile=dhcnpy",
                  "--set", "data.split=folder")
    p = child.data.params
    assert p["split.labeled"] == "0002,0004,0005"
    assert p["split.source"] == "synapse:labeled_50p" and p["split.num_unlabeled"] == "3"


# -- cover_classes ---------------------------------------------------------------------------


def test_cover_classes_labels_every_class_present(tmp_path: Path) -> None:
    """Only c07 holds class 2: a plain seeded draw of 2 of 16 often misses it, a
    class-covering draw never does."""
    def cases():
        for i in range(20):
            label = np.zeros((2, 2, 2), np.uint8)
            label[0, 0, 0] = 1
            if i == 7:
                label[1, 1, 1] = 2
            yield PreparedCase(f"c{i:02d}", np.zeros((2, 2, 2), np.float32), label,
                               (1.0, 1.0, 1.0))

    ids = [f"c{i:02d}" for i in range(20)]
    ds = write_prepared(tmp_path / "toy", name="toy", class_names=("bg", "a", "rare"),
                        profile="native", cases=cases(),
                        splits={"train": ids[:16], "eval": ids[16:18], "test": ids[18:]})
    plain = [resolve_split(ds, 0.125, seed) for seed in range(1, 9)]
    covered = [resolve_split(ds, 0.125, seed, cover_classes=True) for seed in range(1, 9)]
    assert any("c07" not in s.labeled for s in plain)
    for s in covered:
        assert len(s.labeled) == 2 and "c07" in s.labeled
        assert np.all(ds.class_counts(s.labeled) > 0)
        assert set(s.labeled) | set(s.unlabeled) == set(ids[:16])
    assert len({s.labeled for s in covered}) > 1  # still a seeded draw


def test_nnunet_two_channel_dataset_prepares_and_trains(
        workdir: Path, tmp_path: Path, tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two input channels (CT + an MR-like channel): stored (C, D, H, W), normalised per
    channel (CT window, z-score), trained with a 2-channel V-Net."""
    src = make_nnunet(tmp_path / "Dataset077_TwoChannel", 10, style="v2")
    meta = json.loads((src / "dataset.json").read_text())
    meta["channel_names"] = {"0": "CT", "1": "T2"}
    meta["name"] = "Dataset077_TwoChannel"
    (src / "dataset.json").write_text(json.dumps(meta))
    for j, path in enumerate(sorted((src / "imagesTr").glob("*_0000.nii.gz"))):
        image, _ = case(j)
        write_nifti(path.with_name(path.name.replace("_0000", "_0001")), image * 0.5 + 100,
                    np.int16)
    root = tmp_path / "data"
    prepare("nnunet", "--src", str(src), "--out", str(root))
    ds = load_prepared(root / "nnunet-dataset077-twochannel-native")
    first = sorted(ds.cases)[0]
    assert ds.meta["channels"] == 2 and ds.image(first).shape[0] == 2
    assert ds.cases[first].shape[-3:] == ds.label(first).shape
    from dhcbench.datasets import DATASETS
    from dhcbench.datasets.loaders import normalised_image

    spec = DATASETS.get("nnunet").spec({"name": "dataset077-twochannel"}, None, root)
    assert spec.channels == 2
    image = normalised_image(ds, spec, first)
    assert 0.0 <= image[0].min() and image[0].max() <= 1.0  # CT: window + min-max
    assert abs(float(image[1].mean())) < 1e-4 and abs(float(image[1].std()) - 1) < 1e-3
    monkeypatch.setenv("DHCBENCH_DATA", str(root))
    child = train(tracking_uri, "nnunet2", "nnunet:dataset077-twochannel", 0.2)
    assert child.data.params["data.resolved_patch_size"] == "[16, 32, 32]"


def test_case_modality_and_normalisation_rules() -> None:
    """One rule set serves training (prepared cases) and ``dhcbench predict`` (new images)."""
    from dhcbench.datasets.intensity import case_modality, normalise_image

    assert case_modality("amos", "amos_0499") == "CT"
    assert case_modality("amos", "amos_0500") == "MR"
    assert case_modality("synapse", "0001") == "CT"
    assert case_modality("nnunet", "case_1", {"0": "MRI"}) == "MR"
    assert case_modality("nnunet", "case_1", {"0": "ct"}) == "CT"
    image = np.array([[[-100.0, 0.0], [100.0, 300.0]]], dtype=np.float32)
    window = (-75.0, 275.0)
    # The CT window, then min-max: -100 and 300 clip to the ends.
    expected = np.array([[[0.0, 75 / 350], [175 / 350, 1.0]]], dtype=np.float32)
    np.testing.assert_allclose(normalise_image(image, "CT", window, {}), expected, rtol=1e-6)
    # MR cases keep the window unless the dataset was prepared with zscore.
    np.testing.assert_allclose(normalise_image(image, "MR", window, {}), expected, rtol=1e-6)
    z = normalise_image(image, "MR", window, {"mri_normalization": "zscore"})
    np.testing.assert_allclose(z, (image - 75.0) / image.std(), rtol=1e-5)
    # Multi-channel: CT channels windowed, others z-scored.
    both = normalise_image(np.stack([image, image]), "CT", window,
                           {"channel_names": {"0": "CT", "1": "T2"}})
    np.testing.assert_allclose(both[0], expected, rtol=1e-6)
    np.testing.assert_allclose(both[1], z, rtol=1e-5)
