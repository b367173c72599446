"""Shared fixtures: a tiny phantom and an isolated working folder with its own MLflow store.

The tiny phantom (10 cases of 20×40×40, patch 16×32×32, 4-filter V-Nets, 1 epoch of 2
iterations) keeps an end-to-end run of the CLI to a few seconds on a 2-core CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

TINY_SETTINGS = [
    "data.options.volume_size=[20,40,40]",
    "data.options.num_cases=10",
    "data.patch_size=[16,32,32]",
    "train.base_filters=4",
    "train.iters_per_epoch=2",
    "train.eval_interval=1",
    "eval.window_batch=8",
    # No logged model (about a second per seed run); finished_runs logs them.
    "tracking.log_checkpoint=false",
]


def tiny_args(*extra: str, epochs: int = 1) -> list[str]:
    """CLI arguments for a fast run on the tiny phantom."""
    args = ["--epochs", str(epochs)]
    for s in TINY_SETTINGS:
        args += ["--set", s]
    return args + list(extra)


def invoke_on(runs: dict, *args: str):  # noqa: ANN201 (typer's Result)
    """Run the CLI in-process against ``finished_runs``' store and data cache."""
    from typer.testing import CliRunner

    from dhcbench.cli import app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DHCBENCH_DATA", str(runs["data"]))
        mp.setenv("MLFLOW_TRACKING_URI", str(runs["uri"]))
        return CliRunner().invoke(app, list(args))


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    # Two tests in one process must not change each other's thread count.
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared-data cache for the whole session (the phantom is generated once)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def workdir(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder (MLflow store, checkpoints, results) sharing the data cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DHCBENCH_DATA", str(data_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import mlflow

    mlflow.set_tracking_uri(None)  # forget any URI an earlier test set
    os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
    return tmp_path


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, object]:
    """CPS and DHC, two seeds each, two epochs on the tiny phantom, through the CLI; one
    MLflow store shared by the tests that only read finished runs."""
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from dhcbench.cli import app

    work = tmp_path_factory.mktemp("finished")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DHCBENCH_DATA", str(data_dir))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for method in ("cps", "dhc"):
            res = runner.invoke(app, ["run", "--method", method, "--seeds", "2",
                                      "--out", str(work / "ckpt"), *tiny_args(epochs=2),
                                      "--set", "tracking.log_checkpoint=true"])
            assert res.exit_code == 0, res.output
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("dhcbench")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return {"uri": uri, "work": work, "data": data_dir,
            "children": [r for r in runs if r.data.tags.get("dhcbench.role") == "seed"],
            "parents": [r for r in runs if r.data.tags.get("dhcbench.role") == "parent"]}
