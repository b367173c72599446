"""Bad input to ``dhcbench prepare``: one ``error:`` line naming the file, exit code 2, and
the output folder left exactly as it was (no dataset, no temporary folder)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dhcbench.cli import app
from dhcbench.datasets import importers
from dhcbench.datasets.splits import resolve_split
from dhcbench.errors import UserError

from .fake_datasets import (
    SIZE,
    case,
    make_amos,
    make_dhc_npy,
    make_nnunet,
    make_synapse,
    write_nifti,
)
from .fake_datasets import listing as tree

runner = CliRunner()

NPY_IDS = [f"{i:04d}" for i in range(1, 7)]
NPY_SPLITS = {"train": NPY_IDS[:3], "eval": NPY_IDS[3:4], "test": NPY_IDS[4:],
              "labeled_50p": NPY_IDS[:1], "unlabeled_50p": NPY_IDS[1:3]}


def _synapse(src: Path) -> None:
    make_synapse(src, ["0001", "0002", "0003"])


def _amos(src: Path) -> None:
    make_amos(src, ["amos_0001", "amos_0507"], ["amos_0008"])


def _nnunet(src: Path) -> None:
    make_nnunet(src, 3, style="v2")


def _npy(src: Path) -> None:
    make_dhc_npy(src, NPY_IDS, NPY_SPLITS)


LAYOUTS: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "synapse": (_synapse, ["--profile", "native"]),
    "amos": (_amos, ["--profile", "native"]),
    "nnunet": (_nnunet, []),
    "dhc-npy": (_npy, ["--task", "synapse"]),
}


# -- mutations: each spoils case 0002 (the second of three) or the description ---------------

def _label(k: int = 1) -> np.ndarray:
    return case(k)[1].copy()


def _image(k: int = 1) -> np.ndarray:
    return case(k)[0].copy()


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_json(src: Path, change: Callable[[dict], None]) -> None:
    data = json.loads((src / "dataset.json").read_text())
    change(data)
    (src / "dataset.json").write_text(json.dumps(data))


def label_99(src: Path) -> None:
    lab = _label()
    lab[0, 0, 0] = 99
    write_nifti(src / "label" / "label0002.nii.gz", lab, np.uint8)


def label_fraction(src: Path) -> None:
    lab = _label().astype(np.float32)
    lab[5, 5, 5] = 1.5
    write_nifti(src / "label" / "label0002.nii.gz", lab, np.float32)


def image_nan(src: Path) -> None:
    img = _image()
    img[6, 10, 10] = np.nan
    write_nifti(src / "img" / "img0002.nii.gz", img, np.float32)


def image_inf(src: Path) -> None:
    img = _image()
    img[6, 10, 10] = np.inf
    write_nifti(src / "img" / "img0002.nii.gz", img, np.float32)


def image_4d(src: Path) -> None:
    xyz = np.transpose(_image(), (2, 1, 0))
    write_nifti(src / "img" / "img0002.nii.gz", np.stack([xyz, xyz], axis=-1), np.int16)


def label_other_shape(src: Path) -> None:
    write_nifti(src / "label" / "label0002.nii.gz", _label()[:, :20], np.uint8)


def duplicate_nii(src: Path) -> None:
    write_nifti(src / "img" / "img0002.nii", _image(), np.int16)  # besides img0002.nii.gz


def amos_duplicate(src: Path) -> None:
    for kind in ("images", "labels"):
        shutil.copy(src / f"{kind}Tr" / "amos_0001.nii.gz", src / f"{kind}Va" / "amos_0001.nii.gz")


def amos_renamed_case(src: Path) -> None:
    """dataset.json still lists amos_0507, whose files are now amos_0002."""
    for kind in ("images", "labels"):
        (src / f"{kind}Tr" / "amos_0507.nii.gz").rename(src / f"{kind}Tr" / "amos_0002.nii.gz")


def npy_write(src: Path, name: str, array: np.ndarray) -> None:
    np.save(src / "npy" / name, array)


def npy_label_fraction(src: Path) -> None:
    lab = _label().astype(np.float32)
    lab[1, 2, 3] = 1.5
    npy_write(src, "0002_label.npy", lab)


def npy_image_nan(src: Path) -> None:
    img = _image()
    img[1, 2, 3] = np.nan
    npy_write(src, "0002_image.npy", img)


def write_split(src: Path, name: str, ids: list[str]) -> None:
    (src / "splits" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


BAD_INPUTS = [
    # (id, layout, mutation, words in the message, the file the message names)
    ("image-without-label", "synapse",
     lambda s: (s / "label" / "label0002.nii.gz").unlink(), "image without a label",
     "img0002.nii.gz"),
    ("label-without-image", "synapse",
     lambda s: (s / "img" / "img0002.nii.gz").unlink(), "label without an image",
     "label0002.nii.gz"),
    ("shapes-differ", "synapse", label_other_shape, "differs from its image's",
     "label0002.nii.gz"),
    ("label-out-of-range", "synapse", label_99, "outside the class range 0..13",
     "label0002.nii.gz"),
    ("label-not-integer", "synapse", label_fraction, "label values are not integers",
     "label0002.nii.gz"),
    ("image-nan", "synapse", image_nan, "NaN or infinite intensities", "img0002.nii.gz"),
    ("image-inf", "synapse", image_inf, "NaN or infinite intensities", "img0002.nii.gz"),
    ("image-4d", "synapse", image_4d, "expected a 3D volume, got shape (24, 24, 12, 2)",
     "img0002.nii.gz"),
    ("image-truncated", "synapse", lambda s: truncate(s / "img" / "img0002.nii.gz"),
     "unreadable NIfTI", "img0002.nii.gz"),
    ("label-truncated", "synapse", lambda s: truncate(s / "label" / "label0002.nii.gz"),
     "unreadable NIfTI", "label0002.nii.gz"),
    ("not-nifti", "synapse",
     lambda s: (s / "img" / "img0002.nii.gz").write_bytes(b"not a NIfTI file"),
     "unreadable NIfTI file", "img0002.nii.gz"),
    ("duplicate-id", "synapse", duplicate_nii, "duplicate case id 0002", "img0002.nii.gz"),
    ("bad-file-name", "synapse",
     lambda s: (s / "img" / "img0002.nii.gz").rename(s / "img" / "scan0002.nii.gz"),
     "expected an image named imgXXXX", "scan0002.nii.gz"),
    ("amos-json-missing", "amos", lambda s: (s / "dataset.json").unlink(), "missing",
     "dataset.json"),
    ("amos-json-invalid", "amos", lambda s: (s / "dataset.json").write_text("{labels: 1"),
     "not valid JSON", "dataset.json"),
    ("amos-json-label-gap", "amos", lambda s: edit_json(s, lambda d: d["labels"].pop("3")),
     "without gaps", "dataset.json"),
    ("amos-json-class-count", "amos",
     lambda s: edit_json(s, lambda d: d["labels"].pop("15")), "15 labels, AMOS has 16",
     "dataset.json"),
    ("amos-json-lists-missing-file", "amos", amos_renamed_case,
     "lists ./imagesTr/amos_0507.nii.gz, which does not exist", "dataset.json"),
    ("amos-duplicate-id", "amos", amos_duplicate, "duplicate case id amos_0001",
     "amos_0001.nii.gz"),
    ("amos-label-without-image", "amos",
     lambda s: (s / "imagesVa" / "amos_0008.nii.gz").unlink(), "label without an image",
     "amos_0008.nii.gz"),
    ("nnunet-json-missing", "nnunet", lambda s: (s / "dataset.json").unlink(), "missing",
     "dataset.json"),
    ("nnunet-json-num-training", "nnunet",
     lambda s: edit_json(s, lambda d: d.update(numTraining=5)),
     "numTraining is 5 but 3 cases exist", "dataset.json"),
    ("nnunet-json-label-gap", "nnunet",
     lambda s: edit_json(s, lambda d: d["labels"].update({"Spleen (whole)": 3})),
     "without gaps, got [0, 1, 3]", "dataset.json"),
    ("nnunet-label-out-of-range", "nnunet",
     lambda s: write_nifti(s / "labelsTr" / "toy_001.nii.gz", _label(), np.uint8),
     "outside the class range 0..2", "toy_001.nii.gz"),
    ("nnunet-no-channel-suffix", "nnunet",
     lambda s: (s / "imagesTr" / "toy_001_0000.nii.gz").rename(s / "imagesTr" / "toy_001.nii.gz"),
     "nnU-Net channel suffix", "toy_001.nii.gz"),
    ("npy-split-id-not-in-data", "dhc-npy", lambda s: write_split(s, "eval", ["0004", "0099"]),
     "id 0099 is not in", "eval.txt"),
    ("npy-split-duplicate-id", "dhc-npy",
     lambda s: write_split(s, "train", ["0001", "0002", "0002", "0003"]), "lists an id twice",
     "train.txt"),
    ("npy-empty-labeled-set", "dhc-npy", lambda s: write_split(s, "labeled_50p", []),
     "the labeled list is empty", "labeled_50p.txt"),
    ("npy-overlapping-splits", "dhc-npy",
     lambda s: write_split(s, "test", ["0005", "0006", "0002"]), "share 0002", "test.txt"),
    ("npy-label-without-image", "dhc-npy",
     lambda s: (s / "npy" / "0002_image.npy").unlink(), "label without an image",
     "0002_label.npy"),
    ("npy-image-nan", "dhc-npy", npy_image_nan, "NaN or infinite", "0002_image.npy"),
    ("npy-label-not-integer", "dhc-npy", npy_label_fraction, "not integers", "0002_label.npy"),
    ("npy-label-out-of-range", "dhc-npy",
     lambda s: npy_write(s, "0002_label.npy", np.full(SIZE, 14, np.int8)), "outside 0..13",
     "0002_label.npy"),
    ("npy-shapes-differ", "dhc-npy",
     lambda s: npy_write(s, "0002_label.npy", _label()[:, :20]), "differs from the image's",
     "0002_label.npy"),
    ("npy-image-4d", "dhc-npy",
     lambda s: npy_write(s, "0002_image.npy", _image()[None]), "expected a 3D array",
     "0002_image.npy"),
    ("npy-truncated", "dhc-npy", lambda s: truncate(s / "npy" / "0002_image.npy"),
     "unreadable .npy file", "0002_image.npy"),
]


def _existing_output(out: Path) -> None:
    """An output folder that already holds something, which must survive untouched."""
    (out / "other-native" / "images").mkdir(parents=True)
    (out / "other-native" / "manifest.json").write_text("{}")
    (out / "notes.txt").write_text("keep me")


def _expect_one_error(res, words: str, filename: str) -> str:
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    assert words in err
    assert filename in err  # the offending file is named
    return err


@pytest.mark.parametrize(("layout", "mutate", "words", "filename"),
                         [pytest.param(*b[1:], id=b[0]) for b in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_leaves_the_output_as_it_was(
        tmp_path: Path, layout: str, mutate: Callable[[Path], None], words: str,
        filename: str) -> None:
    build, args = LAYOUTS[layout]
    src = tmp_path / "src"
    build(src)
    mutate(src)
    # an output folder with content: unchanged, no temporary folder left behind
    out = tmp_path / "out"
    _existing_output(out)
    before = tree(out)
    res = runner.invoke(app, ["prepare", layout, "--src", str(src), "--out", str(out), *args])
    err = _expect_one_error(res, words, filename)
    assert tree(out) == before
    # an output folder that does not exist yet is not created
    missing = tmp_path / "new" / "data"
    res = runner.invoke(app, ["prepare", layout, "--src", str(src), "--out", str(missing),
                              *args])
    assert res.exit_code == 2 and res.stderr.strip() == err.replace(str(out), str(missing))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_the_bad_inputs_prepare_cleanly_before_mutation(tmp_path: Path) -> None:
    """The fixtures of the bad-input test are valid until spoiled (so each failure above
    comes from its mutation)."""
    for layout, (build, args) in LAYOUTS.items():
        src = tmp_path / layout
        build(src)
        res = runner.invoke(app, ["prepare", layout, "--src", str(src), "--out",
                                  str(tmp_path / "out"), *args])
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "amos-native", "nnunet-dataset042-toyorgans-native", "synapse-dhcnpy", "synapse-native"]


def test_interrupted_prepare_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    src = tmp_path / "src"
    _synapse(src)
    out = tmp_path / "out"
    _existing_output(out)
    before = tree(out)
    calls = {"n": 0}
    real = importers.read_volume

    def read_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the second case's label: the first case is already written
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(importers, "read_volume", read_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        importers.prepare("synapse", src, out, "native")
    assert calls["n"] == 4
    assert tree(out) == before
    monkeypatch.setattr(importers, "read_volume", real)
    ds = importers.prepare("synapse", src, out, "native")  # and a retry then works
    assert sorted(ds.cases) == ["0001", "0002", "0003"]


def test_prepare_twice_and_unwritable_output(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _synapse(src)
    out = tmp_path / "out"
    args = ["prepare", "synapse", "--src", str(src), "--profile", "native"]
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 0
    before = tree(out)
    res = runner.invoke(app, [*args, "--out", str(out)])
    _expect_one_error(res, "already prepared; delete the folder", "synapse-native")
    assert tree(out) == before
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = runner.invoke(app, [*args, "--out", str(blocker / "sub")])
    _expect_one_error(res, "output folder cannot be written", "sub")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["prepare", "synapse", "--profile", "dhc2025"], "unknown geometry profile 'dhc2025'"),
        (["prepare", "synapse", "--profile", "dhc2023", "--spacing", "1,1,1"],
         "--spacing applies to the native profile only"),
        (["prepare", "synapse", "--profile", "native", "--spacing", "1,0,1"],
         "expected three positive numbers"),
        (["prepare", "dicom"], "unknown layout 'dicom'"),
        (["prepare", "dhc-npy"], "dhc-npy needs --task synapse or --task amos"),
    ],
)
def test_bad_options(tmp_path: Path, args: list[str], words: str) -> None:
    src = tmp_path / "src"
    _synapse(src)
    res = runner.invoke(app, [*args, "--src", str(src), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and words in err
    assert not (tmp_path / "out").exists()


def test_split_ids_not_in_the_prepared_data(workdir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A Synapse folder without the reference ids cannot use the reference manifest."""
    src = tmp_path / "src"
    _synapse(src)  # ids 0001-0003 only: 27 of the 30 reference ids are missing
    root = tmp_path / "data"
    assert runner.invoke(app, ["prepare", "synapse", "--src", str(src), "--out", str(root),
                               "--profile", "native"]).exit_code == 0
    monkeypatch.setenv("DHCBENCH_DATA", str(root))
    res = runner.invoke(app, ["run", "--dataset", "synapse", "--set",
                              "data.options.profile=native", "--epochs", "1"])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: split manifest synapse:dhc2023: 27 id(s) are not in the"
                          " prepared data")
    assert "synapse-native" in err and "(e.g. 0004)" in err
    assert not (workdir / "mlflow.db").exists()


def test_resolve_split_refuses_an_empty_labeled_set(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _npy(src)
    ds = importers.prepare("dhc-npy", src, tmp_path / "out", task="synapse")
    with pytest.raises(UserError, match=r"int\(3 x 0.1\) = 0 labeled cases"):
        resolve_split(ds, 0.1)
