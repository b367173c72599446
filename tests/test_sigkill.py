"""``kill -9`` at any point of a run, then ``--resume``: the result equals an uninterrupted run.

Each run is a real process (``python -m``-like, through a small launcher that arranges the
kill and then starts the command line), killed with SIGKILL by itself at one point: in the
middle of an epoch, while a checkpoint file is half written, while the test split is being
predicted. The resumed run must end FINISHED with test metrics identical to those of an
uninterrupted run, in the same store. (A kill during the first creation of the store is in
``tests/test_store_safety.py``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .conftest import tiny_args

LAUNCHER = '''
import os, signal, sys
from pathlib import Path

point = sys.argv[1]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if point == "mid-epoch":
    from dhcbench.benchmark import trainer
    step = trainer.Trainer._step

    def killing_step(self, lr, lam):
        if self.pos.global_iter == 3:  # epoch 1, second iteration
            die()
        step(self, lr, lam)

    trainer.Trainer._step = killing_step
elif point == "checkpoint":
    import torch
    save, count = torch.save, [0]

    def killing_save(obj, f, *args, **kwargs):
        count[0] += 1
        if count[0] == 3:  # the first file written at the end of training, half written
            if hasattr(f, "write"):
                f.write(b"half a checkpoint")
                f.flush()
            else:
                Path(f).write_bytes(b"half a checkpoint")
            die()
        save(obj, f, *args, **kwargs)

    torch.save = killing_save
elif point == "testing":
    from dhcbench.benchmark import seed_run
    predict, count = seed_run.predict_case, [0]

    def killing_predict(*args, **kwargs):
        count[0] += 1
        if count[0] == 2:
            die()
        return predict(*args, **kwargs)

    seed_run.predict_case = killing_predict

from dhcbench.cli import main

sys.argv = ["dhcbench", *sys.argv[2:]]
main()
'''


def _run(work: Path, data: Path, point: str, *args: str) -> int:
    env = {**os.environ, "DHCBENCH_DATA": str(data)}
    env.pop("MLFLOW_TRACKING_URI", None)
    launcher = work / "launch.py"
    launcher.write_text(LAUNCHER)
    cmd = [sys.executable, str(launcher), point, "run", "--method", "cps",
           "--set", "train.threads=1", *tiny_args(epochs=1), *args]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, timeout=300).returncode


def _seed_runs(work: Path, experiment: str) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("dhcbench.role") == "seed"]


def _test_metrics(run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if k.startswith("test")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict]:
    """One uninterrupted run; its store is shared by the killed runs (other experiments)."""
    work = tmp_path_factory.mktemp("sigkill")
    assert _run(work, data_dir, "none") == 0
    (run,) = _seed_runs(work, "dhcbench")
    return work, _test_metrics(run)


@pytest.mark.parametrize("point", ["mid-epoch", "checkpoint", "testing"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(reference, data_dir: Path,
                                                         point: str) -> None:
    work, expected = reference
    assert expected
    code = _run(work, data_dir, point, "--experiment", point)
    assert code == -9  # killed, nothing closed the runs
    (killed,) = _seed_runs(work, point)
    assert killed.info.status == "RUNNING"
    if point == "checkpoint":  # the half-written file is there, the checkpoints intact
        (half,) = Path(killed.data.tags["dhcbench.checkpoint_dir"]).glob(".*.pt.tmp")
        assert half.read_bytes() == b"half a checkpoint"
    assert _run(work, data_dir, "none", "--experiment", point, "--resume") == 0
    (resumed,) = _seed_runs(work, point)
    assert resumed.info.run_id == killed.info.run_id
    assert resumed.info.status == "FINISHED"
    assert _test_metrics(resumed) == expected
