"""End-to-end runs of the CLI on the tiny phantom: MLflow layout, table, determinism,
interrupt/resume, crash status and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from dhcbench.benchmark import trainer as trainer_mod
from dhcbench.cli import app
from dhcbench.datasets.classes import SYNAPSE_CLASSES

from .conftest import tiny_args

runner = CliRunner()
FOREGROUND = SYNAPSE_CLASSES[1:]


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result


def runs_by_role(workdir: Path) -> tuple[list, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dhcbench")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("dhcbench.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("dhcbench.role") == "seed"]
    return parents, children


def test_cps_and_dhc_end_to_end_with_table(finished_runs: dict, tmp_path: Path) -> None:
    """`dhcbench run --method cps|dhc --seeds 2` (2 epochs): the MLflow layout, then the
    table rendered from it."""
    parents, children = finished_runs["parents"], finished_runs["children"]
    assert len(parents) == 2 and len(children) == 4
    assert all(r.info.status == "FINISHED" for r in parents + children)
    parent_ids = {p.info.run_id for p in parents}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == parent_ids
    assert sorted(c.data.tags["seed"] for c in children) == ["0", "0", "1", "1"]
    for child in children:
        m = child.data.metrics
        tags = child.data.tags
        assert {tags["method"], tags["dataset"], tags["contract"], tags["variant"]} <= {
            "cps", "dhc", "phantom", "reference"}
        assert tags["version"] and tags["git_sha"]
        for cls in FOREGROUND:
            assert f"test/dice/{cls}" in m and f"test/asd/{cls}" in m
            assert f"train/weight_a/{cls}" in m and f"train/weight_b/{cls}" in m
            assert f"eval/dice/{cls}" in m
            assert 0.0 <= m[f"test/dice/{cls}"] <= 100.0
        for key in ("train/loss_sup", "train/loss_unsup", "train/lambda", "train/lr",
                    "test/dice_mean", "test/asd_mean", "test_last/dice_mean",
                    "test/rigorous/dice_mean"):
            assert key in m, key
        assert child.data.params["train.epochs"] == "2"
    # CPS trains unweighted; DHC's DistDW weights (×K scaling) lie in [0, K] and vary.
    cps_child = next(c for c in children if c.data.tags["method"] == "cps")
    dhc_child = next(c for c in children if c.data.tags["method"] == "dhc")
    cps_w = [cps_child.data.metrics[f"train/weight_a/{c}"] for c in SYNAPSE_CLASSES]
    dhc_w = [dhc_child.data.metrics[f"train/weight_b/{c}"] for c in SYNAPSE_CLASSES]
    assert cps_w == [1.0] * 14
    assert all(0.0 <= w <= 14.0 for w in dhc_w) and len(set(dhc_w)) > 1

    res = invoke("table", "--format", "md", "--uri", finished_runs["uri"], "--out",
                 str(tmp_path / "results"))
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("| ")]
    header = lines[0].split("|")[1:-1]
    assert [h.strip() for h in header][:5] == ["Method", "n", "Avg. Dice", "Avg. ASD",
                                               "Tail-4 Dice"]
    assert len(header) == 5 + 13
    rows = {ln.split("|")[1].strip(): ln for ln in lines[1:] if not ln.startswith("| *")}
    assert set(rows) == {"cps", "dhc"}
    assert [ln.split("|")[1].strip() for ln in lines if ln.startswith("| *")] == [
        "*General*", "*Ours*"]
    for row in rows.values():
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1] == "2"
        assert all("±" in c for c in cells[2:])
    client = MlflowClient(tracking_uri=finished_runs["uri"])
    artifacts = {a.path for a in client.list_artifacts(dhc_child.info.run_id, "figures")}
    assert artifacts == {f"figures/{n}.png" for n in ("weights", "test_dice", "curves",
                                                       "classes", "slices")}
    csvs = {a.path for a in client.list_artifacts(dhc_child.info.run_id, "metrics")}
    assert csvs == {"metrics/test_cases_best.csv", "metrics/test_cases_last.csv"}
    files = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert files == [f"table_phantom_20p_dhc_dice_best.{ext}"
                     for ext in ("csv", "html", "md", "tex")]


def _test_metrics(run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items()
            if k.startswith(("test/", "test_last/", "eval/"))}


def test_same_seed_twice_gives_identical_metrics(workdir: Path) -> None:
    for _ in range(2):
        res = invoke("run", "--method", "dhc", *tiny_args(epochs=2))
        assert res.exit_code == 0, res.output
    _, children = runs_by_role(workdir)
    assert len(children) == 2
    a, b = (_test_metrics(c) for c in children)
    assert a and a == b


def test_interrupted_run_resumes_to_identical_metrics(workdir: Path, monkeypatch) -> None:
    res = invoke("run", "--method", "dhc", *tiny_args(epochs=2))
    assert res.exit_code == 0, res.output
    _, children = runs_by_role(workdir)
    reference = _test_metrics(children[0])

    original_step = trainer_mod.Trainer._step
    calls = {"n": 0}

    def step_then_stop(self, lr, lam):
        original_step(self, lr, lam)
        calls["n"] += 1
        if calls["n"] == 3:  # mid-epoch 1 (2 iterations per epoch)
            self.stop.requested = True

    monkeypatch.setattr(trainer_mod.Trainer, "_step", step_then_stop)
    res = invoke("run", "--method", "dhc", "--experiment", "resume", *tiny_args(epochs=2))
    assert res.exit_code == 130, res.output
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("resume")
    killed = client.search_runs([exp.experiment_id])
    assert {r.info.status for r in killed} == {"KILLED"}
    child_id = next(r.info.run_id for r in killed if r.data.tags["dhcbench.role"] == "seed")

    monkeypatch.setattr(trainer_mod.Trainer, "_step", original_step)
    res = invoke("run", "--method", "dhc", "--experiment", "resume", "--resume",
                 *tiny_args(epochs=2))
    assert res.exit_code == 0, res.output
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2  # the same parent and child, continued
    assert {r.info.status for r in runs} == {"FINISHED"}
    child = client.get_run(child_id)
    assert _test_metrics(child) == reference


def test_a_crashed_run_resumes_from_its_last_save_to_identical_metrics(
        workdir: Path, monkeypatch) -> None:
    res = invoke("run", "--method", "cps", *tiny_args(epochs=2))
    assert res.exit_code == 0, res.output
    reference = _test_metrics(runs_by_role(workdir)[1][0])

    # A crash in epoch 1: no graceful save. What is on disk is the state written after
    # epoch 0's evaluation (last.pt, and best.pt before it); the run is marked FAILED.
    original_step = trainer_mod.Trainer._step
    calls = {"n": 0}

    def step_then_crash(self, lr, lam):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        original_step(self, lr, lam)

    monkeypatch.setattr(trainer_mod.Trainer, "_step", step_then_crash)
    res = invoke("run", "--method", "cps", "--experiment", "crash", *tiny_args(epochs=2))
    assert res.exit_code != 0
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("crash")
    assert {r.info.status for r in client.search_runs([exp.experiment_id])} == {"FAILED"}

    monkeypatch.setattr(trainer_mod.Trainer, "_step", original_step)
    res = invoke("run", "--method", "cps", "--experiment", "crash", "--resume",
                 *tiny_args(epochs=2))
    assert res.exit_code == 0, res.output
    assert "resumed at epoch 1, iteration 0" in " ".join(res.output.split())
    child = next(r for r in client.search_runs([exp.experiment_id])
                 if r.data.tags["dhcbench.role"] == "seed")
    assert child.info.status == "FINISHED"
    assert _test_metrics(child) == reference


def test_crash_marks_runs_failed(workdir: Path, monkeypatch) -> None:
    def boom(self, lr, lam):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(trainer_mod.Trainer, "_step", boom)
    res = invoke("run", "--method", "cps", *tiny_args(epochs=1))
    assert res.exit_code != 0
    parents, children = runs_by_role(workdir)
    assert [r.info.status for r in parents + children] == ["FAILED", "FAILED"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "dhcc"], "unknown method 'dhcc'; did you mean 'dhc'?"),
        (["--dataset", "phantum"], "unknown dataset 'phantum'; did you mean 'phantom'?"),
        (["--ratio", "0.05"], "0 labeled cases"),
        (["--seeds", "0"], "--seeds 0: need at least one seed"),
        (["--set", "train.nope=1"], "unknown setting train.nope"),
        (["--set", "train.lr=abc"], "train.lr: cannot use 'abc'"),
        (["--variant", "weird"], "variant"),
        (["--device", "tpu"], "--device 'tpu'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    workdir: Path, args: list[str], message: str
) -> None:
    res = runner.invoke(app, ["run", *args, *tiny_args()])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert message in err
    assert not (workdir / "mlflow.db").exists()
    assert not (workdir / "mlruns").exists()


def test_unwritable_output_folder(workdir: Path) -> None:
    blocker = workdir / "file"
    blocker.write_text("not a folder")
    res = runner.invoke(app, ["run", "--out", str(blocker / "sub"), *tiny_args()])
    assert res.exit_code == 2
    assert "output folder cannot be written" in res.stderr
    assert not (workdir / "mlflow.db").exists()


def test_table_without_store_is_an_error(workdir: Path) -> None:
    res = runner.invoke(app, ["table"])
    assert res.exit_code == 2
    assert "no MLflow store here" in res.stderr
    assert not (workdir / "mlflow.db").exists()
