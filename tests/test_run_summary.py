"""``dhcbench run`` ends with each seed's test Dice and tail-class Dice, its run id, and the
commands to run next; the numbers are the ones logged to MLflow."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from dhcbench.cli import app
from dhcbench.reports.table import tail_classes

from .conftest import tiny_args

runner = CliRunner()


def test_run_prints_a_summary_of_its_seeds_and_the_next_commands(workdir: Path) -> None:
    res = runner.invoke(app, ["run", "--method", "cps", "--seeds", "2", *tiny_args(epochs=0)],
                        terminal_width=200)
    assert res.exit_code == 0, res.output
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dhcbench")
    seeds = sorted((r for r in client.search_runs([exp.experiment_id])
                    if r.data.tags["dhcbench.role"] == "seed"),
                   key=lambda r: int(r.data.tags["seed"]))
    out = res.stdout
    assert "seed run id" in out and "Tail-4 Dice %" in out
    for run in seeds:
        m, tags = run.data.metrics, run.data.tags
        tail = tail_classes(tags["classes"].split(","),
                            [int(v) for v in run.data.params["split.labeled_voxels"].split(",")],
                            4)
        tail_dice = sum(m[f"test/dice/{c}"] for c in tail) / 4
        row = next(line for line in out.splitlines() if run.info.run_id in line)
        cells = [c.strip() for c in row.split("│") if c.strip()]
        assert cells == [tags["seed"], run.info.run_id, f"{m['test/dice_mean']:.2f}",
                         f"{tail_dice:.2f}"]
    assert "dhcbench table --experiment dhcbench --dataset phantom --ratio 0.2" in out
    assert ("dhcbench plot curves " + " ".join(f"--run {r.info.run_id}" for r in seeds)) in out
    assert "mlflow ui" in out


def test_table_reads_a_store_without_writing_beside_it(finished_runs: dict, tmp_path: Path,
                                                        monkeypatch) -> None:
    # A copy of a store with finished runs: `table` adds its output folder and nothing else
    # (no lock file, no temporary store), and the database's runs are unchanged.
    import shutil

    shutil.copy(finished_runs["work"] / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    res = runner.invoke(app, ["table"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dhcbench-results", "mlflow.db"]


def test_table_reads_a_store_named_with_sqlite_options(finished_runs: dict, tmp_path: Path,
                                                        monkeypatch) -> None:
    # The store's file is found as MLflow finds it: without the ?options of the URI.
    import shutil

    shutil.copy(finished_runs["work"] / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}?timeout=30")
    res = runner.invoke(app, ["table"], terminal_width=200)
    assert res.exit_code == 0, res.output
