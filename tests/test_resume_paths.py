"""``--resume`` finds a run's checkpoints from any working folder, and refuses in one line,
rather than training again from scratch, when they are gone."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from dhcbench.benchmark import trainer as trainer_mod
from dhcbench.cli import app

from .conftest import tiny_args

runner = CliRunner()


def _interrupted_run(workdir: Path, monkeypatch) -> MlflowClient:
    """A DHC run stopped by a signal in epoch 1, after its epoch-0 checkpoint."""
    original = trainer_mod.Trainer._step
    calls = {"n": 0}

    def step_then_stop(self, lr, lam):
        original(self, lr, lam)
        calls["n"] += 1
        if calls["n"] == 3:
            self.stop.requested = True

    monkeypatch.setattr(trainer_mod.Trainer, "_step", step_then_stop)
    res = runner.invoke(app, ["run", "--method", "dhc", *tiny_args(epochs=2)])
    assert res.exit_code == 130, res.output
    monkeypatch.setattr(trainer_mod.Trainer, "_step", original)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def _seed_run(client: MlflowClient):
    exp = client.get_experiment_by_name("dhcbench")
    return next(r for r in client.search_runs([exp.experiment_id])
                if r.data.tags["dhcbench.role"] == "seed")


def test_resume_from_another_folder_continues_the_run(workdir: Path, monkeypatch) -> None:
    client = _interrupted_run(workdir, monkeypatch)
    recorded = Path(_seed_run(client).data.tags["dhcbench.checkpoint_dir"])
    assert recorded.is_absolute() and (recorded / "last.pt").is_file()
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = runner.invoke(app, ["run", "--method", "dhc", "--resume", *tiny_args(epochs=2)])
    assert res.exit_code == 0, res.output
    assert "resumed at epoch 1, iteration 1" in " ".join(res.output.split())
    run = _seed_run(client)
    assert run.info.status == "FINISHED"
    assert not (elsewhere / "dhcbench-runs").exists()  # no new checkpoint folder here


def test_resume_refuses_when_the_checkpoints_are_gone(workdir: Path, monkeypatch) -> None:
    client = _interrupted_run(workdir, monkeypatch)
    shutil.rmtree(Path(_seed_run(client).data.tags["dhcbench.checkpoint_dir"]))
    res = runner.invoke(app, ["run", "--method", "dhc", "--resume", *tiny_args(epochs=2)])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot resume" in err[0] and "is gone" in err[0]
    run = _seed_run(client)
    assert run.info.status == "FAILED"
    assert "cannot resume" in run.data.tags["dhcbench.failure"]
    assert "train/loss" not in client.get_run(run.info.run_id).data.metrics or all(
        m.step < 1 for m in client.get_metric_history(run.info.run_id, "train/loss"))


def test_a_resumed_run_logs_every_epoch_once(workdir: Path, monkeypatch) -> None:
    # last.pt is written at epoch 0 only (then not again within a minute): a crash in
    # epoch 3 makes the resume replay epochs 1 and 2, which were logged already.
    original = trainer_mod.Trainer._step

    def crash_in_epoch_3(self, lr, lam):
        if self.pos.epoch == 3:
            raise RuntimeError("simulated crash")
        original(self, lr, lam)

    monkeypatch.setattr(trainer_mod.Trainer, "_step", crash_in_epoch_3)
    assert runner.invoke(app, ["run", "--method", "cps", *tiny_args(epochs=4)]).exit_code != 0
    monkeypatch.setattr(trainer_mod.Trainer, "_step", original)
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    run_id = _seed_run(client).info.run_id
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [0, 1, 2]
    res = runner.invoke(app, ["run", "--method", "cps", "--resume", *tiny_args(epochs=4)])
    assert res.exit_code == 0, res.output
    assert "resumed at epoch 1, iteration 0" in " ".join(res.output.split())
    for key in ("train/loss", "train/lr", "eval/dice_mean"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert steps == [0, 1, 2, 3, 4], key
    tags = client.get_run(run_id).data.tags  # the run beat while it ran, and owns itself
    assert tags["dhcbench.heartbeat"] and tags["dhcbench.pid"] and tags["dhcbench.host"]
    assert "dhcbench.note" not in tags


def test_a_full_disk_fails_the_run_in_one_line_and_it_resumes_once_space_is_back(
        workdir: Path, monkeypatch) -> None:
    import errno

    import torch

    real_save, calls = torch.save, {"n": 0}

    def disk_fills_up(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 0's best.pt and last.pt fit, the next file does not
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    res = runner.invoke(app, ["run", "--method", "cps", *tiny_args(epochs=2)])
    monkeypatch.setattr(torch, "save", real_save)
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1
    assert err[0].endswith("cannot write the checkpoint (No space left on device)")
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    run = _seed_run(client)
    assert run.info.status == "FAILED"
    assert "No space left on device" in run.data.tags["dhcbench.failure"]
    ckpt = Path(run.data.tags["dhcbench.checkpoint_dir"])
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.pt", "last.pt"]  # no temp file
    res = runner.invoke(app, ["run", "--method", "cps", "--resume", *tiny_args(epochs=2)])
    assert res.exit_code == 0, res.output
    assert "resumed at epoch 1, iteration 0" in " ".join(res.output.split())
    assert _seed_run(client).info.status == "FINISHED"
