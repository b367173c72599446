"""A diverged run is a failure, not a result: the trainer stops at the first NaN or infinite
value, the seed run and its parent end FAILED with the reason, the last finite checkpoint
stays on disk, the command exits non-zero with one line, and ``table`` leaves the run out
(``--include-failed`` shows it, marked)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from dhcbench.benchmark import checkpoint
from dhcbench.benchmark import trainer as trainer_mod
from dhcbench.benchmark.train_state import TrainingDiverged, first_non_finite
from dhcbench.cli import app

from .conftest import tiny_args

runner = CliRunner()


def _runs(workdir: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dhcbench")
    return client.search_runs([exp.experiment_id], max_results=100)


def test_first_non_finite_names_the_first_bad_value() -> None:
    finite = {"loss": torch.tensor(1.5), "weights_1": torch.ones(4)}
    assert first_non_finite(finite) is None
    assert first_non_finite({}) is None
    bad = {**finite, "weights_2": torch.tensor([1.0, math.inf]), "x": torch.tensor(math.nan)}
    assert first_non_finite(bad) == "weights_2"
    assert first_non_finite({"loss": torch.tensor(math.nan)}) == "loss"
    err = TrainingDiverged("loss", 3, 61, run="dhc-phantom-20p-seed0")
    assert str(err) == ("dhc-phantom-20p-seed0: training diverged: loss became non-finite at"
                        " epoch 3, iteration 61")


def test_a_huge_learning_rate_fails_the_run_with_its_reason(workdir: Path) -> None:
    res = runner.invoke(app, ["run", "--method", "dhc", "--set", "train.lr=1e6",
                              *tiny_args(epochs=3)])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in res.stderr
    assert err[0].startswith("error: dhc-phantom-20p-seed0: training diverged:")
    runs = _runs(workdir)
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"]
    for run in runs:  # both the seed run and its parent say why
        assert "training diverged" in run.data.tags["dhcbench.failure"]
    assert not any(k.startswith("test/") for r in runs for k in r.data.metrics)


def test_nan_after_a_checkpoint_keeps_it_and_the_table_leaves_the_run_out(
    workdir: Path, monkeypatch
) -> None:
    # A finished CPS run for the table, then a DHC run whose loss turns NaN in epoch 2.
    assert runner.invoke(app, ["run", "--method", "cps", *tiny_args(epochs=1)]).exit_code == 0
    original = trainer_mod.Trainer._step

    def nan_in_epoch_2(self, lr, lam):
        if self.pos.epoch == 2:
            real = self.method.training_step

            def poisoned(batch, ctx):
                out = real(batch, ctx)
                out.loss = out.loss * math.nan
                return out

            monkeypatch.setattr(self.method, "training_step", poisoned)
        return original(self, lr, lam)

    monkeypatch.setattr(trainer_mod.Trainer, "_step", nan_in_epoch_2)
    monkeypatch.setattr(trainer_mod, "LAST_SAVE_INTERVAL_S", 0.0)
    res = runner.invoke(app, ["run", "--method", "dhc", *tiny_args(epochs=3)])
    assert res.exit_code == 2
    assert "loss became non-finite at epoch 2, iteration 4" in res.stderr
    dhc = [r for r in _runs(workdir) if r.data.tags.get("method") == "dhc"]
    assert {r.info.status for r in dhc} == {"FAILED"}
    seed_run = next(r for r in dhc if r.data.tags.get("dhcbench.role") == "seed")
    assert seed_run.data.tags["dhcbench.failure"].endswith("epoch 2, iteration 4")
    # The checkpoint of epoch 1 is kept, and every weight in it is finite.
    last = checkpoint.load(Path(seed_run.data.tags["dhcbench.checkpoint_dir"]) / checkpoint.LAST)
    assert last["position"]["epoch"] == 2 and last["position"]["index"] == 0
    weights = [t for t in last["method"]["networks"].values() if t.is_floating_point()]
    assert weights and all(torch.isfinite(t).all() for t in weights)

    csv = workdir / "dhcbench-results" / "table_phantom_20p_dhc_dice_best.csv"
    table = runner.invoke(app, ["table"], terminal_width=250)
    assert table.exit_code == 0, table.output
    assert list(pd.read_csv(csv)["method"]) == ["cps"]
    assert "Left out 1 failed seed run(s): dhc seed 0 (dhc-phantom-20p-seed0: training" \
        in " ".join(table.stdout.split())
    marked = runner.invoke(app, ["table", "--include-failed"], terminal_width=250)
    assert marked.exit_code == 0, marked.output
    rows = pd.read_csv(csv)
    assert list(rows["method"]) == ["cps", "dhc seed 0 FAILED"]
    assert list(rows["kind"]) == ["ours", "failed"]
    assert rows.iloc[1].filter(like="_mean").isna().all()
