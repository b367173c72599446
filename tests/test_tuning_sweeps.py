"""Tuning (Optuna) and sweeps: studies with nested MLflow runs, the best-parameters YAML,
studies shared by several processes (SQLite here, PostgreSQL when a server is available),
a suite run twice that trains each run once, and submitit's local executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from dhcbench.benchmark.sweep import (
    Job,
    job_states,
    load_suite,
    run_local,
    submit,
    worker_slots,
)
from dhcbench.benchmark.tracking import open_tracker
from dhcbench.cli import app

from .conftest import TINY_SETTINGS

runner = CliRunner()
TINY = [a for s in TINY_SETTINGS for a in ("--set", s)]
SUITE = """
name = "tiny"
experiment = "tiny-suite"
[defaults]
"train.epochs" = 1
"train.iters_per_epoch" = 2
"train.base_filters" = 4
"train.eval_interval" = 1
"data.patch_size" = [16, 32, 32]
"data.options" = {volume_size = [20, 40, 40], num_cases = 10}
"eval.window_batch" = 8
"tracking.log_checkpoint" = false
[[group]]
methods = ["cps", "dhc"]
datasets = ["phantom"]
ratios = [0.2]
seeds = [0, 1]
"""


def tune_args(storage: str, trials: int, study: str = "s", sampler_seed: int = 0) -> list[str]:
    return ["tune", "--method", "dhc", "--ratio", "0.2", "--trials", str(trials), "--epochs",
            "1", "--storage", storage, "--study", study, "--params", "beta,alpha,tau,lr",
            "--sampler-seed", str(sampler_seed), *TINY]


def runs_of(uri: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


def test_three_trials_nested_runs_and_best_yaml(workdir: Path) -> None:
    storage = f"sqlite:///{workdir / 'optuna.db'}"
    res = runner.invoke(app, tune_args(storage, 3))
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 3
    runs = runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "dhcbench-tune")
    by_id = {r.info.run_id: r for r in runs}
    (study_run,) = [r for r in runs if r.data.tags.get("dhcbench.role") == "study"]
    states = [t.state for t in study.trials]
    complete, pruned = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    assert states[:2] == [complete, complete]  # the median pruner's start-up trials
    for trial in study.trials:
        run = by_id[trial.user_attrs["mlflow_run_id"]]  # trial -> MLflow run
        assert run.data.tags["mlflow.parentRunId"] == study_run.info.run_id
        assert run.data.tags["optuna.trial"] == str(trial.number)  # MLflow run -> trial
        assert run.info.status == "FINISHED"
        assert set(trial.params) == {"beta", "alpha", "tau", "lr"}
        seed_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        assert len(seed_runs) == 1
        metrics = seed_runs[0].data.metrics
        assert not any(k.startswith("test/") for k in metrics)  # the test split is never read
        if trial.state == complete:
            assert trial.value == pytest.approx(metrics["eval/best_dice_mean"])
        else:
            assert trial.state == pruned and run.data.tags["dhcbench.pruned"] == "true"
            assert trial.intermediate_values  # pruned from the intermediate evaluations
    assert study_run.data.tags["optuna.best_trial"] == str(study.best_trial.number)
    best = yaml.safe_load((workdir / "best_s.yaml").read_text())
    assert best["method"]["kwargs"]["tau"] == study.best_params["tau"]
    assert best["train"]["lr"] == pytest.approx(study.best_params["lr"])
    # The YAML re-runs as a configuration.
    res = runner.invoke(app, ["run", "--method", "dhc", "--config", str(workdir / "best_s.yaml"),
                              "--experiment", "rerun", *TINY, "--epochs", "1"])
    assert res.exit_code == 0, res.output
    (seed_run,) = [r for r in runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "rerun")
                   if r.data.tags.get("dhcbench.role") == "seed"]
    assert seed_run.data.params["method.kwargs.beta"] == str(study.best_params["beta"])


def test_tune_bad_input(workdir: Path) -> None:
    res = runner.invoke(app, ["tune", "--method", "dhc", "--params", "gamma", *TINY])
    assert res.exit_code == 2 and "--params 'gamma': not tunable for dhc" in res.stderr
    res = runner.invoke(app, ["tune", "--trials", "0", *TINY])
    assert res.exit_code == 2 and "at least one trial" in res.stderr
    assert not (workdir / "optuna.db").exists()


def _env(workdir: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, DHCBENCH_DATA=str(data_dir), **extra)
    env.pop("MLFLOW_TRACKING_URI", None) if "MLFLOW_TRACKING_URI" not in extra else None
    return env


def test_two_processes_share_one_study(workdir: Path, data_dir: Path) -> None:
    storage = f"sqlite:///{workdir / 'optuna.db'}"
    for worker in range(2):  # two separate processes, one after the other, one SQLite study
        proc = subprocess.run([sys.executable, "-m", "dhcbench",
                               *tune_args(storage, 1, sampler_seed=worker)],
                              cwd=workdir, env=_env(workdir, data_dir), capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.number for t in study.trials] == [0, 1]
    assert len({t.user_attrs["mlflow_run_id"] for t in study.trials}) == 2


@pytest.fixture
def postgres(request: pytest.FixtureRequest):  # noqa: ANN201
    """Two fresh databases (Optuna, MLflow) on the server of ``$DHCBENCH_TEST_POSTGRES``."""
    server = os.environ.get("DHCBENCH_TEST_POSTGRES")
    if not server:
        pytest.skip("no PostgreSQL server: set DHCBENCH_TEST_POSTGRES=postgresql://user:pw@host"
                    ":port (.ci/run installs and starts one)")
    import psycopg

    names = [f"dhcbench_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("optuna", "mlflow")]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    yield [f"{server}/{name}" for name in names]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_two_concurrent_processes_share_a_postgresql_study(workdir: Path, data_dir: Path,
                                                           postgres: list[str]) -> None:
    optuna_url, mlflow_url = postgres
    optuna.create_study(study_name="s", storage=optuna_url, direction="maximize")
    env = _env(workdir, data_dir, MLFLOW_TRACKING_URI=mlflow_url)
    procs = [subprocess.Popen([sys.executable, "-m", "dhcbench",
                               *tune_args(optuna_url, 1, sampler_seed=worker)],
                              cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for worker in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="s", storage=optuna_url)
    assert len(study.trials) == 2
    assert {t.state for t in study.trials} <= {optuna.trial.TrialState.COMPLETE,
                                               optuna.trial.TrialState.PRUNED}
    runs = runs_of(mlflow_url, "dhcbench-tune")
    assert len([r for r in runs if r.data.tags.get("dhcbench.role") == "study"]) == 1
    assert {t.user_attrs["mlflow_run_id"] for t in study.trials} <= {r.info.run_id for r in runs}


def test_sweep_twice_trains_each_run_once(workdir: Path) -> None:
    (workdir / "tiny.toml").write_text(SUITE)
    res = runner.invoke(app, ["sweep", "tiny.toml", "--dry-run"])
    assert res.exit_code == 0 and "4 runs — 0 done, 0 to resume, 4 new" in " ".join(
        res.output.split())
    res = runner.invoke(app, ["sweep", "tiny.toml"])
    assert res.exit_code == 0, res.output
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    first = [r for r in runs_of(uri, "tiny-suite") if r.data.tags["dhcbench.role"] == "seed"]
    assert len(first) == 4 and {r.info.status for r in first} == {"FINISHED"}
    # again, with --table: nothing to train, and the suite's table printed by the same command
    res = runner.invoke(app, ["sweep", "tiny.toml", "--table"], terminal_width=200)
    out = " ".join(res.output.split())
    assert res.exit_code == 0 and "4 done, 0 to resume, 0 new" in out
    assert "Avg. Dice" in out and "cps" in out and "dhc" in out
    again = [r for r in runs_of(uri, "tiny-suite") if r.data.tags["dhcbench.role"] == "seed"]
    assert sorted(r.info.run_id for r in again) == sorted(r.info.run_id for r in first)


def test_shipped_suites_plan_the_paper_tables() -> None:
    suite = load_suite("synapse-20p")
    assert len(suite.jobs) == 13 * 3
    assert {j.seed for j in suite.jobs} == {0, 1, 666}
    assert len(load_suite("ablation").jobs) == 8 * 3
    assert {j.ratio for j in load_suite("amos-5p").jobs} == {0.05}
    assert len({j.key for j in load_suite("phantom").jobs}) == 4
    # the phantom benchmark: table 1's methods and both bounds, 20 %, the paper's seeds
    paper = load_suite("phantom-paper")
    assert len({j.key for j in paper.jobs}) == 14 * 3
    assert {"fully", "labeled-only", "cps", "dhc"} <= {j.method for j in paper.jobs}
    assert {j.ratio for j in paper.jobs} == {0.2} and {j.seed for j in paper.jobs} == {0, 1, 666}
    # its bounds, run alone for calibration, are the same runs (same keys, same experiment)
    bounds = load_suite("phantom-bounds")
    assert {j.key for j in bounds.jobs} == {j.key for j in paper.jobs
                                             if j.method in ("fully", "labeled-only")}
    assert bounds.experiment == paper.experiment
    # the demo: CPS and DHC, seed 0, the same runs as `dhcbench run` makes in the default
    # experiment, where `dhcbench table --dataset phantom` reads them
    demo = load_suite("phantom-demo")
    assert sorted((j.method, j.seed) for j in demo.jobs) == [("cps", 0), ("dhc", 0)]
    assert demo.experiment == "dhcbench"
    assert {j.key for j in demo.jobs} <= {j.key for j in paper.jobs}


def _fail_on_seed_one(job, uri):  # noqa: ANN001, ANN202 - a picklable stand-in for run_job
    del uri
    (Path(os.environ["DHCBENCH_TEST_MARKERS"]) / str(job.seed)).write_text("")
    if job.seed == 1:
        raise RuntimeError("job failed")
    time.sleep(0.5)
    return f"ran {job.seed}"


def test_a_failing_job_stops_the_sweep_and_cancels_queued_jobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    markers = tmp_path / "started"
    markers.mkdir()
    monkeypatch.setenv("DHCBENCH_TEST_MARKERS", str(markers))
    layers = ({"tracking": {"experiment": "cancel"}},)
    jobs = [Job("cps", "phantom", 0.2, seed, layers) for seed in range(12)]
    with pytest.raises(RuntimeError, match="job failed"):
        run_local(jobs, f"sqlite:///{tmp_path / 'mlflow.db'}", None, gpus=[], workers=2,
                  task=_fail_on_seed_one)
    started = {int(p.name) for p in markers.iterdir()}
    # the failing job and those already handed to a worker ran; the queued rest never did
    assert {0, 1} <= started and len(started) <= 8


def _slow_job(job, uri):  # noqa: ANN001, ANN202 - a picklable stand-in for run_job
    del uri
    (Path(os.environ["DHCBENCH_TEST_MARKERS"]) / f"{os.getpid()}-{job.seed}").write_text("")
    time.sleep(30.0)
    return "ran"


def _graceful_job(job, uri):  # noqa: ANN001, ANN202 - a picklable stand-in for run_job
    """Like a real run: SIGTERM is turned into a flag, and the job stops at the next poll
    with RunInterrupted (its state saved, its run KILLED)."""
    from dhcbench.benchmark.runner import RunInterrupted

    del uri
    (Path(os.environ["DHCBENCH_TEST_MARKERS"]) / f"{os.getpid()}-{job.seed}").write_text("")
    stop = []
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        for _ in range(300):
            if stop:
                raise RunInterrupted(f"seed {job.seed} interrupted by SIGTERM")
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return "ran"


def _sweep_in_a_subprocess(tmp_path: Path, task: str) -> tuple[subprocess.Popen, Path]:
    """A 6-job, 2-worker local sweep of the stand-in job ``task`` in its own process, once both
    workers have started a job; each job leaves a marker file ``<worker pid>-<seed>``."""
    markers = tmp_path / "started"
    markers.mkdir()
    script = (
        f"from tests.test_tuning_sweeps import {task}\n"
        "from dhcbench.benchmark.sweep import Job, run_local\n"
        "layers = ({'tracking': {'experiment': 'term'}},)\n"
        "jobs = [Job('cps', 'phantom', 0.2, s, layers) for s in range(6)]\n"
        f"run_local(jobs, 'sqlite:///{tmp_path / 'mlflow.db'}', None, gpus=[], workers=2,"
        f" task={task})\n"
    )
    env = {**os.environ, "DHCBENCH_TEST_MARKERS": str(markers)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env,
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while len(list(markers.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(markers.iterdir())) == 2, "the workers never started"
    return proc, markers


def _marker_pids(markers: Path) -> set[int]:
    return {int(p.name.split("-")[0]) for p in markers.iterdir()}


def test_sigterm_to_a_sweep_of_graceful_jobs_starts_no_further_job(tmp_path: Path) -> None:
    """Runs that save and close on SIGTERM (as the trainer does) outlive the signal: the job
    the pool already handed their worker must not start after them, and the sweep exits."""
    proc, markers = _sweep_in_a_subprocess(tmp_path, "_graceful_job")
    proc.terminate()
    try:
        code = proc.wait(timeout=20)  # a job that started anyway would hold it for 30 s
    finally:
        if proc.poll() is None:  # do not leave the sweep or its workers behind on failure
            proc.kill()
            for pid in _marker_pids(markers):
                if _alive(pid):
                    os.kill(pid, 9)
    assert code != 0
    assert sorted(int(p.name.split("-")[1]) for p in markers.iterdir()) == [0, 1]


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_sigterm_stops_the_sweep_and_its_workers(tmp_path: Path) -> None:
    """A sweep killed with SIGTERM stops its workers at once instead of leaving them to
    finish their runs (and start queued ones) as orphans."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc to see the worker processes")
    proc, markers = _sweep_in_a_subprocess(tmp_path, "_slow_job")
    workers = _marker_pids(markers)
    assert len(workers) == 2, "both jobs ran in one worker"
    proc.terminate()
    assert proc.wait(timeout=60) != 0
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # do not leave them behind when the check fails
        os.kill(pid, 9)
    assert not survivors, "worker processes outlived the killed sweep"


def test_worker_slots_share_cpu_cores_or_pin_gpus() -> None:
    assert worker_slots(None, [], cores=2) == [("cpu", 1), ("cpu", 1)]
    assert worker_slots(None, [], cores=16) == [("cpu", 8), ("cpu", 8)]
    assert worker_slots(1, [], cores=2) == [("cpu", 2)]
    assert worker_slots(4, [], cores=2) == [("cpu", 1)] * 4
    assert worker_slots(None, [], cores=1) == [("cpu", 1)]
    assert worker_slots(None, ["0", "3"]) == [("gpu", "0"), ("gpu", "3")]
    assert worker_slots(1, ["0", "3"]) == [("gpu", "0")]


def test_suite_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[group]]\nmethods = ["dhcc"]\ndatasets = ["phantom"]\n'
                   "ratios = [0.2]\nseeds = [0]\n")
    res = runner.invoke(app, ["sweep", str(bad), "--dry-run"])
    assert res.exit_code == 2 and "unknown method 'dhcc'" in res.stderr
    bad.write_text('name = "x"\n[[group]]\nmethods = ["dhc"]\n')
    res = runner.invoke(app, ["sweep", str(bad), "--dry-run"])
    assert res.exit_code == 2 and "missing 'datasets'" in res.stderr
    res = runner.invoke(app, ["sweep", "no-such-suite"])
    assert res.exit_code == 2 and "shipped:" in res.stderr
    res = runner.invoke(app, ["sweep", "phantom", "--workers", "0"])
    assert res.exit_code == 2 and "--workers 0" in res.stderr


def test_submitit_local_executor_runs_a_two_task_array(workdir: Path, tmp_path: Path) -> None:
    (workdir / "tiny.toml").write_text(SUITE)
    suite = load_suite(str(workdir / "tiny.toml"))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    jobs = submit(suite.jobs[:2], uri, tmp_path / "submitit", cluster="local", wait=True)
    assert [j.result() for j in jobs] == ["trained", "trained"]
    tracker = open_tracker(uri, suite.experiment)
    states = job_states(tracker, suite.jobs)
    assert [states[j.key] for j in suite.jobs] == ["done", "done", "new", "new"]


OPEN_STORE = """
import sys
from dhcbench.benchmark.tracking import open_tracker
tracker = open_tracker(sys.argv[1], "race")
print(tracker.experiment_id)
"""


def test_processes_creating_one_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    """A job array's tasks open a store that does not exist yet at the same moment; the
    schema migration must run once, not race (it once failed with
    ``table _alembic_tmp_tags already exists``)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, uri], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-500:] for _, err in outs]
    ids = {out.strip() for out, _ in outs}
    assert len(ids) == 1  # one experiment, created once
    assert MlflowClient(uri).get_experiment_by_name("race").experiment_id in ids
