"""What MLflow's users see, read back through the MLflow client from finished CLI runs.

The experiment kind, system tags, description, dataset input, the logged model (loaded and
used to segment a test case), the parent's per-class mean metrics and artifacts, and a
resolved spec with no ``None`` where a default applies.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from dhcbench.benchmark.planning import git_sha
from dhcbench.benchmark.spec import build_spec, flatten


@pytest.fixture(scope="module")
def client(finished_runs: dict) -> MlflowClient:
    return MlflowClient(tracking_uri=finished_runs["uri"])


def _spec(client: MlflowClient, run_id: str, tmp_path: Path) -> dict:
    return yaml.safe_load(Path(client.download_artifacts(run_id, "spec.yaml", str(tmp_path)))
                          .read_text())


def test_experiment_is_classic_model_training(client: MlflowClient) -> None:
    exp = client.get_experiment_by_name("dhcbench")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_system_tags_and_description(finished_runs: dict) -> None:
    sha = git_sha()
    for run in finished_runs["children"] + finished_runs["parents"]:
        tags = run.data.tags
        assert tags["mlflow.source.name"].startswith("dhcbench")
        assert tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.user"]
        if sha != "unknown":
            assert tags["mlflow.source.git.commit"] == sha
        note = tags["mlflow.note.content"]
        assert "\n" not in note and tags["method"].upper() in note.upper()
        assert "phantom" in note and "20% labeled" in note
        if tags["dhcbench.role"] == "seed":
            assert f"seed {tags['seed']}" in note


def test_dataset_input_with_digest(finished_runs: dict, client: MlflowClient) -> None:
    digests = set()
    for run in finished_runs["children"] + finished_runs["parents"]:
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert len(inputs) == 1
        ds = inputs[0].dataset
        assert ds.name == "phantom-0.2"
        assert len(ds.digest) == 16 and int(ds.digest, 16) >= 0
        assert [t.value for t in inputs[0].tags if t.key == "mlflow.data.context"] == ["training"]
        assert "test" in ds.profile
        digests.add(ds.digest)
    assert len(digests) == 1  # the same cases and split for every run


def test_resolved_spec_has_no_hidden_default(finished_runs: dict, client: MlflowClient,
                                             tmp_path: Path) -> None:
    for run in finished_runs["children"]:
        spec = _spec(client, run.info.run_id, tmp_path / run.info.run_id)
        nones = [k for k, v in flatten(spec).items() if v is None]
        assert nones == ["train.patience"]  # None there means "never stop early"
        assert spec["data"]["patch_size"] == [16, 32, 32]
        assert spec["eval"]["stride"] == [4, 8, 8]  # a quarter of the patch
        assert spec["train"]["device"] == "cpu" and spec["train"]["amp"] is False
        assert spec["train"]["threads"] >= 1 and spec["train"]["iters_per_epoch"] == 2
        if run.data.tags["method"] == "dhc":  # β, α, τ as the method uses them
            kwargs = spec["method"]["kwargs"]
            assert {"beta": 0.99, "alpha": 0.2, "tau": 50}.items() <= kwargs.items()
        assert build_spec([spec]).seed == int(run.data.tags["seed"])  # it rebuilds the run
        # the params are the resolved values too
        assert run.data.params["eval.stride"] == "[4, 8, 8]"


def test_logged_model_segments_a_test_case_as_the_run_did(
        finished_runs: dict, client: MlflowClient, tmp_path: Path) -> None:
    import mlflow.pytorch

    from dhcbench.benchmark.mlflow_tracker import MlflowTracker
    from dhcbench.datasets.loaders import load_case
    from dhcbench.evaluation.scoring import case_rows
    from dhcbench.evaluation.segmenter import Segmenter, load_segmenter, tracking_uri
    from dhcbench.reports.runs import dataset_of, load_run

    run = next(r for r in finished_runs["children"] if r.data.tags["method"] == "dhc")
    run_id = run.info.run_id
    model = load_segmenter(f"runs:/{run_id}/model", finished_runs["uri"])
    assert isinstance(model, Segmenter) and model.class_names[1] == "spleen"
    with tracking_uri(finished_runs["uri"]):  # MLflow's own loader gives the same
        assert isinstance(mlflow.pytorch.load_model(f"runs:/{run_id}/model"), Segmenter)

    loaded = load_run(MlflowTracker(finished_runs["uri"], "dhcbench"), run_id)
    dspec, ds = dataset_of(loaded)
    case_id = run.data.params["split.test_ids"].split(",")[0]
    case = load_case(ds, dspec, case_id)
    pred = model.segment(case.image)
    assert pred.shape == case.label.shape
    dice = {r["class"]: r["value"] for r in case_rows(case_id, pred, case.label,
                                                      dspec.class_names, case.spacing)
            if r["contract"] == "dhc" and r["metric"] == "dice"}
    logged = pd.read_csv(io.StringIO(Path(client.download_artifacts(
        run_id, "metrics/test_cases_best.csv", str(tmp_path))).read_text()))
    logged = logged[(logged.case == case_id) & (logged.contract == "dhc")
                    & (logged.metric == "dice")].set_index("class")["value"]
    for name, value in dice.items():
        assert value == pytest.approx(logged[name], abs=1e-4), name


def test_parent_has_per_class_means_and_seed_table(finished_runs: dict, client: MlflowClient,
                                                   tmp_path: Path) -> None:
    for parent in finished_runs["parents"]:
        pid = parent.info.run_id
        children = [r for r in finished_runs["children"]
                    if r.data.tags["mlflow.parentRunId"] == pid]
        assert len(children) == 2
        metrics = parent.data.metrics
        for key in ("test/dice/liver", "test/dice/spleen", "test/asd/liver", "test/dice_mean"):
            values = [c.data.metrics[key] for c in children]
            assert metrics[key] == pytest.approx(np.mean(values))
            assert metrics[f"{key}_std"] == pytest.approx(np.std(values))
        assert metrics["seeds_finished"] == 2
        names = {a.path for a in client.list_artifacts(pid)}
        assert {"spec.yaml", "seeds.csv", "seeds.md", "figures"} <= names
        figures = {a.path for a in client.list_artifacts(pid, "figures")}
        assert figures == {"figures/classes.png", "figures/test_dice.png"}
        table = pd.read_csv(client.download_artifacts(pid, "seeds.csv", str(tmp_path / pid)))
        assert list(table.seed) == ["0", "1", "mean", "std"] or list(table.seed.astype(str)) == [
            "0", "1", "mean", "std"]
        assert set(table.run_id.dropna()) == {c.info.run_id for c in children}
        mean_row = table[table.seed.astype(str) == "mean"].iloc[0]
        assert mean_row["liver"] == pytest.approx(metrics["test/dice/liver"], abs=1e-3)


def test_tracking_uri_block_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import mlflow

    from dhcbench.evaluation.segmenter import tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///outer.db")
    with tracking_uri("sqlite:///inner.db"):
        assert mlflow.get_tracking_uri() == "sqlite:///inner.db"
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///outer.db"
    assert mlflow.get_tracking_uri() == "sqlite:///outer.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with tracking_uri("sqlite:///inner.db"):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ
