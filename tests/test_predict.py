"""``dhcbench predict`` options on real (tiny) runs: ``--checkpoint last`` loads ``last.pt``,
``--ensemble`` averages the seed runs' probabilities, ``--save-probabilities`` writes
nnU-Net-style ``.npz`` files whose argmax is the label map, and bad uses are one-line
errors that write nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dhcbench.datasets.phantom import PhantomConfig, generate_case

from .conftest import invoke_on as invoke

NUM_CLASSES = 14  # the phantom uses Synapse's 13 organs and background


@pytest.fixture(scope="module")
def runs(finished_runs: dict[str, object]) -> dict[str, object]:
    return finished_runs


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One phantom case on another grid and orientation than the training volumes."""
    image, _ = generate_case(PhantomConfig(volume_size=(20, 40, 40), num_cases=10), 3)
    source = np.transpose(image, (2, 1, 0))[:, :36, :]
    affine = np.array([[-0.8, 0, 0, 120.0], [0, 0.9, 0, -30.0], [0, 0, 2.5, 14.0],
                       [0, 0, 0, 1]])
    folder = tmp_path_factory.mktemp("images")
    nib.save(nib.Nifti1Image(source.astype(np.int16), affine), str(folder / "x.nii.gz"))
    return folder


def seeds(runs: dict, method: str) -> list:
    return sorted((c for c in runs["children"] if c.data.tags["method"] == method),
                  key=lambda c: c.data.tags["seed"])


def parent_of(runs: dict, method: str) -> str:
    return seeds(runs, method)[0].data.tags["mlflow.parentRunId"]


def predict(runs: dict, images: Path, out: Path, run_id: str, *extra: str) -> None:
    res = invoke(runs, "predict", "--run", run_id, "--images", str(images), "--out", str(out),
                 "--device", "cpu", "--save-probabilities", *extra)
    assert res.exit_code == 0, (res.output, res.exception)


def read_probs(path: Path) -> tuple[np.ndarray, list[str]]:
    with np.load(path) as npz:
        return npz["probabilities"], list(npz["class_names"])


def argmax_agrees(probs: np.ndarray, labels: np.ndarray) -> None:
    """``labels`` is the argmax of ``probs`` wherever float16 rounding leaves no tie."""
    top = probs.max(axis=0)
    chosen = np.take_along_axis(probs, labels[None].astype(np.int64), 0)[0]
    assert np.array_equal(chosen, top)  # a tie may go either way, nothing else may
    unique = (probs == top).sum(axis=0) == 1  # no float16 tie at the top
    assert unique.mean() > 0.5
    assert np.array_equal(probs.argmax(0)[unique], labels[unique])


@pytest.fixture(scope="module")
def dhc_outputs(runs: dict, images: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, Path]:
    """Best-checkpoint predictions with probabilities: each DHC seed run alone, and the
    ensemble over their parent run."""
    outs = {}
    for child in seeds(runs, "dhc"):
        outs[child.info.run_id] = tmp_path_factory.mktemp("seed")
        predict(runs, images, outs[child.info.run_id], child.info.run_id)
    outs["ensemble"] = tmp_path_factory.mktemp("ensemble")
    predict(runs, images, outs["ensemble"], parent_of(runs, "dhc"), "--ensemble")
    return outs


def test_saved_probabilities_match_the_label_map(images: Path, dhc_outputs: dict) -> None:
    source = nib.load(str(images / "x.nii.gz"))
    for out in dhc_outputs.values():
        assert sorted(p.name for p in out.iterdir()) == ["x.nii.gz", "x_probabilities.npz"]
        probs, names = read_probs(out / "x_probabilities.npz")
        assert probs.dtype == np.float16 and probs.shape == (NUM_CLASSES, *source.shape)
        assert len(names) == NUM_CLASSES and names[0] == "background"
        sums = probs.astype(np.float32).sum(axis=0)
        assert np.allclose(sums, 1.0, atol=NUM_CLASSES * 2.0 ** -11)
        labels = np.asarray(nib.load(str(out / "x.nii.gz")).dataobj)
        argmax_agrees(probs.astype(np.float32), labels)


def test_ensemble_averages_the_seed_runs_probabilities(runs: dict, dhc_outputs: dict) -> None:
    members = [c.info.run_id for c in seeds(runs, "dhc")]
    assert len(members) == 2
    per_seed = [read_probs(dhc_outputs[m] / "x_probabilities.npz")[0].astype(np.float32)
                for m in members]
    assert not np.allclose(per_seed[0], per_seed[1], atol=1e-2)  # two different models
    mean = np.mean(per_seed, axis=0)
    ensemble = read_probs(dhc_outputs["ensemble"] / "x_probabilities.npz")[0].astype(np.float32)
    assert np.allclose(ensemble, mean, atol=2.0 ** -10)  # float16 rounding of three files
    labels = np.asarray(nib.load(str(dhc_outputs["ensemble"] / "x.nii.gz")).dataobj)
    clear = np.sort(mean, axis=0)[-1] - np.sort(mean, axis=0)[-2] > 2.0 ** -9
    assert clear.mean() > 0.5  # most voxels decided beyond float16 rounding
    assert np.array_equal(labels[clear], mean.argmax(0)[clear])


def test_checkpoint_last_loads_last_pt(runs: dict, images: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from dhcbench.benchmark import checkpoint
    from dhcbench.evaluation.predict import segment_images
    from dhcbench.methods import METHODS
    from dhcbench.reports.runs import dataset_of, load_run

    child = seeds(runs, "cps")[1]
    loaded_paths: list[Path] = []
    real_load = checkpoint.load

    def spy(path: Path) -> dict:
        loaded_paths.append(Path(path))
        return real_load(path)

    monkeypatch.setattr(checkpoint, "load", spy)
    predict(runs, images, tmp_path / "cli", child.info.run_id, "--checkpoint", "last")
    last = Path(child.data.tags["dhcbench.checkpoint_dir"]) / "last.pt"
    assert loaded_paths == [last]

    # The same inference with the weights of last.pt loaded by hand.
    from dhcbench.benchmark.mlflow_tracker import MlflowTracker

    monkeypatch.setenv("DHCBENCH_DATA", str(runs["data"]))
    run = load_run(MlflowTracker(str(runs["uri"]), "dhcbench"), child.info.run_id)
    dspec, ds = dataset_of(run)
    method = METHODS.get("cps").build(num_classes=dspec.num_classes, in_channels=1,
                                      base_filters=run.spec.train.base_filters,
                                      variant=run.spec.method.variant,
                                      kwargs=run.spec.method.kwargs)
    method.load_state_dict(real_load(last)["method"])
    method.eval()
    segment_images(method, dspec, ds.meta, run.spec.eval, images, tmp_path / "manual", "cpu",
                   save_probabilities=True)
    cli, _ = read_probs(tmp_path / "cli" / "x_probabilities.npz")
    manual, _ = read_probs(tmp_path / "manual" / "x_probabilities.npz")
    assert np.array_equal(cli, manual)


def fails(res, *needles: str) -> None:
    err = res.stderr.strip()
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def test_bad_uses_are_one_line_errors(runs: dict, images: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    parent = parent_of(runs, "dhc")
    seed = seeds(runs, "dhc")[0].info.run_id

    def run(run_id: str, *extra: str):
        return invoke(runs, "predict", "--run", run_id, "--images", str(images), "--out",
                      str(out), "--device", "cpu", *extra)

    fails(run(parent), "is a parent run", "--ensemble", seed)
    fails(run(seed, "--checkpoint", "first"), "--checkpoint 'first'")

    from dhcbench.benchmark import checkpoint
    from dhcbench.benchmark.mlflow_tracker import MlflowTracker
    from dhcbench.reports import predict as report

    with monkeypatch.context() as mp:
        mp.setattr(checkpoint, "LAST", "gone.pt")  # as if last.pt had been deleted
        fails(run(seed, "--checkpoint", "last"), "--checkpoint last", "gone.pt")
        fails(run(parent, "--ensemble", "--checkpoint", "last"), "gone.pt")
    with monkeypatch.context() as mp:
        mp.setattr(MlflowTracker, "children", lambda self, parent_id: [])
        fails(run(parent, "--ensemble"), "no FINISHED seed run")
    real = report.dataset_spec  # the other seeds' specs (the first run's data is opened)

    def second_differs(loaded):  # noqa: ANN001, ANN202
        return dataclasses.replace(real(loaded), patch_size=(8, 16, 16))

    with monkeypatch.context() as mp:
        mp.setattr(report, "dataset_spec", second_differs)
        fails(run(parent, "--ensemble"), "disagree", "patch [16, 32, 32]", "patch [8, 16, 16]")
    assert not out.exists()  # nothing was written, not even the folder
