"""Bad input to every command: one line on stderr, exit code 2, and nothing written.

One table of cases. Each runs one command in a fresh working folder (with, where the case
needs it, a copy of a small MLflow store holding one finished run, and the config or suite
files the case writes) and checks that the command fails before it writes anything: the
folder's files (the store's bytes included) and the store's experiments are exactly as
before. No case trains: every one must fail before the first step.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dhcbench.cli import app

from .conftest import TINY_SETTINGS

runner = CliRunner()

TINY = [a for s in TINY_SETTINGS for a in ("--set", s)]
RUN = ["run", "--epochs", "1", *TINY]
TUNE = ["tune", "--trials", "1", "--epochs", "1", *TINY]
PLOT = ["plot", "weights", "--run", "0123456789abcdef"]
PREDICT = ["predict", "--run", "0123456789abcdef", "--images", "images", "--out", "labels"]


@dataclass(frozen=True)
class Case:
    """One bad invocation: its arguments, the files it needs, the store and environment.

    ``store``: ``none`` (no store in the folder) or ``copy`` (a copy of the small store as
    ./mlflow.db). ``files`` are written into the folder first ({name: text}; a name ending
    in ``/`` is a folder). ``env`` values may use ``{dir}`` for the folder.
    """

    args: list[str]
    files: dict[str, str] = field(default_factory=dict)
    store: str = "none"
    env: dict[str, str] = field(default_factory=dict)


def suite(group: str = "", top: str = "", **keys: str) -> str:
    """A suite TOML of one group; ``keys`` replace the group's lines (methods=..., ...)."""
    lines = {"methods": '["dhc"]', "datasets": '["phantom"]', "ratios": "[0.2]",
             "seeds": "[0]"}
    lines.update(keys)
    body = "".join(f"{k} = {v}\n" for k, v in lines.items() if v)
    return f'name = "bad"\n{top}\n[[group]]\n{body}{group}'


def sweep(text: str, *extra: str) -> Case:
    """A ``sweep`` of the suite ``text`` (written as suite.toml)."""
    return Case(["sweep", "suite.toml", *extra], files={"suite.toml": text})


MISSING_DB = {"MLFLOW_TRACKING_URI": "sqlite:///{dir}/missing.db"}
NO_FOLDER_DB = {"MLFLOW_TRACKING_URI": "sqlite:///{dir}/no-folder/x.db"}
BLOCKER = {"blocker": "a file, not a folder"}

CASES: dict[str, Case] = {
    # -- run: seeds ---------------------------------------------------------------------
    "run-seed-list-negative": Case([*RUN, "--seed-list", "-5"]),
    "run-seed-list-second-negative": Case([*RUN, "--seed-list", "0,-1"]),
    "run-seed-list-repeats": Case([*RUN, "--seed-list", "0,0"]),
    "run-seed-list-text": Case([*RUN, "--seed-list", "a,b"]),
    "run-seed-list-empty": Case([*RUN, "--seed-list", ","]),
    "run-seed-list-too-big": Case([*RUN, "--seed-list", "4294967296"]),
    "run-seeds-0": Case([*RUN, "--seeds", "0"]),
    "run-seeds-negative": Case([*RUN, "--seeds", "-2"]),
    # -- run: training settings -------------------------------------------------------------
    "run-momentum-negative": Case([*RUN, "--set", "train.momentum=-1"]),
    "run-momentum-1": Case([*RUN, "--set", "train.momentum=1"]),
    "run-momentum-nan": Case([*RUN, "--set", "train.momentum=.nan"]),
    "run-weight-decay-negative": Case([*RUN, "--set", "train.weight_decay=-1"]),
    "run-weight-decay-inf": Case([*RUN, "--set", "train.weight_decay=.inf"]),
    "run-threads-negative": Case([*RUN, "--set", "train.threads=-3"]),
    "run-threads-0": Case([*RUN, "--set", "train.threads=0"]),
    "run-lambda-negative": Case([*RUN, "--set", "train.unsup_weight=-1"]),
    "run-lambda-nan": Case([*RUN, "--set", "train.unsup_weight=.nan"]),
    "run-lr-nan": Case([*RUN, "--set", "train.lr=.nan"]),
    "run-lr-inf": Case([*RUN, "--set", "train.lr=.inf"]),
    "run-lr-overflow": Case([*RUN, "--set", "train.lr=1e400"]),
    "run-lr-0": Case([*RUN, "--set", "train.lr=0"]),
    "run-lr-negative": Case([*RUN, "--set", "train.lr=-0.1"]),
    "run-lr-text": Case([*RUN, "--set", "train.lr=abc"]),
    "run-lr-bool": Case([*RUN, "--set", "train.lr=true"]),
    "run-poly-power-negative": Case([*RUN, "--set", "train.poly_power=-1"]),
    "run-patience-0": Case([*RUN, "--set", "train.patience=0"]),
    "run-iters-0": Case([*RUN, "--set", "train.iters_per_epoch=0"]),
    "run-eval-interval-0": Case([*RUN, "--set", "train.eval_interval=0"]),
    "run-batch-0": Case([*RUN, "--set", "train.batch_labeled=0"]),
    "run-base-filters-0": Case([*RUN, "--set", "train.base_filters=0"]),
    "run-rampup-negative": Case([*RUN, "--set", "train.rampup_epochs=-1"]),
    "run-epochs-negative": Case([*RUN, "--epochs", "-1"]),
    "run-epochs-fraction": Case([*RUN, "--set", "train.epochs=1.5", "--epochs", "1"]),
    "run-device-empty": Case([*RUN, "--set", "train.device="]),
    "run-device-tpu": Case([*RUN, "--device", "tpu"]),
    "run-unknown-setting": Case([*RUN, "--set", "train.nope=1"]),
    "run-unknown-section": Case([*RUN, "--set", "trian.lr=1"]),
    # -- run: a scalar where a section is expected -----------------------------------------
    "run-train-scalar": Case([*RUN, "--set", "train=5"]),
    "run-kwargs-scalar": Case([*RUN, "--set", "method.kwargs=5"]),
    "run-options-scalar": Case([*RUN, "--set", "data.options=5"]),
    "run-method-scalar-then-kwarg": Case([*RUN, "--set", "method=dhc",
                                          "--set", "method.kwargs.beta=0.9"]),
    # -- run: method keyword arguments --------------------------------------------------------
    "run-beta-text": Case([*RUN, "--set", "method.kwargs.beta=abc"]),
    "run-beta-5": Case([*RUN, "--set", "method.kwargs.beta=5"]),
    "run-beta-0": Case([*RUN, "--set", "method.kwargs.beta=0"]),
    "run-beta-1": Case([*RUN, "--set", "method.kwargs.beta=1"]),
    "run-beta-nan": Case([*RUN, "--set", "method.kwargs.beta=.nan"]),
    "run-alpha-0": Case([*RUN, "--set", "method.kwargs.alpha=0"]),
    "run-alpha-negative": Case([*RUN, "--set", "method.kwargs.alpha=-1"]),
    "run-alpha-inf": Case([*RUN, "--set", "method.kwargs.alpha=.inf"]),
    "run-tau-0": Case([*RUN, "--set", "method.kwargs.tau=0"]),
    "run-tau-fraction": Case([*RUN, "--set", "method.kwargs.tau=2.5"]),
    "run-tau-bool": Case([*RUN, "--set", "method.kwargs.tau=true"]),
    "run-kwarg-unknown": Case([*RUN, "--set", "method.kwargs.gamma=1"]),
    "run-sup-loss-unknown": Case([*RUN, "--set", "method.kwargs.sup_loss=nope"]),
    "run-cps-unsup-loss-unknown": Case([*RUN, "--method", "cps",
                                        "--set", "method.kwargs.unsup_loss=nope"]),
    "run-cps-takes-no-beta": Case([*RUN, "--method", "cps",
                                   "--set", "method.kwargs.beta=0.9"]),
    # -- run: evaluation, data, method, dataset ------------------------------------------------
    "run-stride-0": Case([*RUN, "--set", "eval.stride=[0,0,0]"]),
    "run-stride-negative": Case([*RUN, "--set", "eval.stride=[16,-1,16]"]),
    "run-stride-two-values": Case([*RUN, "--set", "eval.stride=[1,2]"]),
    "run-window-batch-0": Case([*RUN, "--set", "eval.window_batch=0"]),
    "run-contract-unknown": Case([*RUN, "--set", "eval.contract=nope"]),
    "run-patch-not-16": Case([*RUN, "--set", "data.patch_size=[15,32,32]"]),
    "run-split-seed-negative": Case([*RUN, "--set", "data.split_seed=-1"]),
    "run-ratio-2": Case([*RUN, "--ratio", "2"]),
    "run-ratio-0": Case([*RUN, "--ratio", "0"]),
    "run-ratio-nan": Case([*RUN, "--ratio", "nan"]),
    "run-ratio-no-labeled-case": Case([*RUN, "--ratio", "0.05"]),
    "run-variant-unknown": Case([*RUN, "--variant", "weird"]),
    "run-method-unknown": Case([*RUN, "--method", "dhcc"]),
    "run-dataset-unknown": Case([*RUN, "--dataset", "phantum"]),
    "run-switch-method": Case([*RUN, "--set", "method.name=cps"]),
    # -- run: assignments and files ------------------------------------------------------------
    "run-set-no-equals": Case([*RUN, "--set", "train.lr"]),
    "run-set-bad-yaml": Case([*RUN, "--set", "train.lr=[1,"]),
    "run-set-empty-key": Case([*RUN, "--set", "=1"]),
    "run-config-missing": Case([*RUN, "--config", "missing.yaml"]),
    "run-config-bad-yaml": Case([*RUN, "--config", "c.yaml"], {"c.yaml": "train: [1,\n"}),
    "run-config-list": Case([*RUN, "--config", "c.yaml"], {"c.yaml": "- 1\n- 2\n"}),
    "run-config-train-scalar": Case([*RUN, "--config", "c.yaml"], {"c.yaml": "train: 5\n"}),
    "run-config-train-scalar-and-set": Case([*RUN, "--config", "c.yaml",
                                             "--set", "train.lr=0.01"],
                                            {"c.yaml": "train: 5\n"}),
    "run-config-kwargs-scalar": Case([*RUN, "--config", "c.yaml"],
                                     {"c.yaml": "method:\n  kwargs: 3\n"}),
    "run-config-beta-2": Case([*RUN, "--config", "c.yaml"],
                              {"c.yaml": "method:\n  kwargs:\n    beta: 2\n"}),
    "run-config-unknown-section": Case([*RUN, "--config", "c.yaml"],
                                       {"c.yaml": "trian:\n  lr: 1\n"}),
    "run-config-is-folder": Case([*RUN, "--config", "conf/"], {"conf/": ""}),
    # -- run: where results go -------------------------------------------------------------------
    "run-experiment-empty": Case([*RUN, "--experiment", ""]),
    "run-experiment-blank": Case([*RUN, "--experiment", "  "]),
    "run-out-under-a-file": Case([*RUN, "--out", "blocker/sub"], BLOCKER),
    "run-out-empty": Case([*RUN, "--set", "tracking.out_dir="]),
    "run-uri-unknown-scheme": Case([*RUN, "--set", "tracking.uri=bogus://x"]),
    "run-uri-no-folder": Case([*RUN, "--set", "tracking.uri=sqlite:///no-folder/x.db"]),
    "run-uri-is-folder": Case([*RUN, "--set", "tracking.uri=sqlite:///conf"], {"conf/": ""}),
    "run-env-uri-no-folder": Case(RUN, env=NO_FOLDER_DB),
    "run-env-uri-scheme": Case(RUN, env={"MLFLOW_TRACKING_URI": "bogus://x"}),
    "run-bad-input-with-store": Case([*RUN, "--seed-list", "0,-1"], store="copy"),
    # -- tune ------------------------------------------------------------------------------------
    "tune-trials-0": Case([*TUNE, "--trials", "0"]),
    "tune-trials-negative": Case([*TUNE, "--trials", "-1"]),
    "tune-method-unknown": Case([*TUNE, "--method", "nope"]),
    "tune-param-unknown": Case([*TUNE, "--params", "gamma"]),
    "tune-params-empty-item": Case([*TUNE, "--params", "beta,,alpha"]),
    "tune-cps-has-no-beta": Case([*TUNE, "--method", "cps", "--params", "beta"]),
    "tune-storage-scheme": Case([*TUNE, "--storage", "bogus://x"]),
    "tune-storage-not-a-url": Case([*TUNE, "--storage", "not a url"]),
    "tune-storage-no-folder": Case([*TUNE, "--storage", "sqlite:///no-folder/o.db"]),
    "tune-storage-memory": Case([*TUNE, "--storage", "sqlite://"]),
    "tune-seed-negative": Case([*TUNE, "--seed", "-3"]),
    "tune-sampler-seed-negative": Case([*TUNE, "--sampler-seed", "-1"]),
    "tune-study-empty": Case([*TUNE, "--study", ""]),
    "tune-experiment-empty": Case([*TUNE, "--experiment", ""]),
    "tune-ratio-2": Case([*TUNE, "--ratio", "2"]),
    "tune-dataset-unknown": Case([*TUNE, "--dataset", "phantum"]),
    "tune-beta-5": Case([*TUNE, "--set", "method.kwargs.beta=5"]),
    "tune-lr-nan": Case([*TUNE, "--set", "train.lr=.nan"]),
    "tune-epochs-negative": Case([*TUNE, "--epochs", "-1"]),
    "tune-out-missing": Case([*TUNE, "--out", "no-folder"]),
    "tune-config-train-scalar": Case([*TUNE, "--config", "c.yaml"], {"c.yaml": "train: 5\n"}),
    "tune-env-uri-no-folder": Case(TUNE, env=NO_FOLDER_DB),
    "tune-bad-input-with-store": Case([*TUNE, "--trials", "0"], store="copy"),
    # -- sweep -----------------------------------------------------------------------------------
    "sweep-ratio-text": sweep(suite(ratios='["a"]')),
    "sweep-ratio-0": sweep(suite(ratios="[0]")),
    "sweep-ratio-above-1": sweep(suite(ratios="[1.5]")),
    "sweep-ratio-bool": sweep(suite(ratios="[true]")),
    "sweep-ratios-not-array": sweep(suite(ratios="0.2")),
    "sweep-ratios-empty": sweep(suite(ratios="[]")),
    "sweep-seed-negative": sweep(suite(seeds="[-1]")),
    "sweep-seed-fraction": sweep(suite(seeds="[0.5]")),
    "sweep-seed-text": sweep(suite(seeds='["0"]')),
    "sweep-seeds-repeat": sweep(suite(seeds="[0, 0]")),
    "sweep-seeds-empty": sweep(suite(seeds="[]")),
    "sweep-method-number": sweep(suite(methods="[1]")),
    "sweep-method-unknown": sweep(suite(methods='["dhcc"]')),
    "sweep-dataset-unknown": sweep(suite(datasets='["phantum"]')),
    "sweep-dataset-bool": sweep(suite(datasets="[true]")),
    "sweep-missing-datasets": sweep(suite(datasets="")),
    "sweep-unknown-group-key": sweep(suite(colour='"red"')),
    "sweep-set-train-scalar": sweep(suite(group='[group.set]\n"train" = 5\n')),
    "sweep-set-train-scalar-then-key": sweep(suite(
        group='[group.set]\n"train" = 5\n"train.lr" = 0.01\n')),
    "sweep-set-beta-5": sweep(suite(group='[group.set]\n"method.kwargs.beta" = 5\n')),
    "sweep-set-lr-nan": sweep(suite(group='[group.set]\n"train.lr" = nan\n')),
    "sweep-set-not-table": sweep(suite(set="5")),
    "sweep-defaults-momentum-2": sweep(suite(top='[defaults]\n"train.momentum" = 2\n')),
    "sweep-defaults-unknown": sweep(suite(top='[defaults]\n"train.nope" = 1\n')),
    "sweep-defaults-not-table": sweep(suite(top="defaults = 5")),
    "sweep-unknown-top-key": sweep(suite(top='colour = "red"')),
    "sweep-name-number": sweep(suite(top="").replace('name = "bad"', "name = 5")),
    "sweep-experiment-empty": sweep(suite(top='experiment = ""')),
    "sweep-group-not-tables": sweep('name = "bad"\ngroup = 5\n'),
    "sweep-no-group": sweep('name = "bad"\n'),
    "sweep-invalid-toml": sweep("name = \n"),
    "sweep-no-such-suite": Case(["sweep", "no-such-suite"]),
    "sweep-dry-run-bad-suite": sweep(suite(seeds="[-1]"), "--dry-run"),
    "sweep-executor-unknown": Case(["sweep", "phantom-demo", "--executor", "nope"]),
    "sweep-workers-0": Case(["sweep", "phantom-demo", "--workers", "0"]),
    "sweep-time-0": Case(["sweep", "phantom-demo", "--executor", "slurm", "--time", "0"]),
    "sweep-max-parallel-0": Case(["sweep", "phantom-demo", "--max-parallel", "0"]),
    "sweep-cpus-0": Case(["sweep", "phantom-demo", "--cpus-per-task", "0"]),
    "sweep-env-uri-no-folder": Case(["sweep", "phantom-demo"], env=NO_FOLDER_DB),
    "sweep-table-under-a-file": Case(["sweep", "phantom-demo", "--table"],
                                     {"dhcbench-results": "a file"}),
    # -- table -----------------------------------------------------------------------------------
    "table-no-store": Case(["table"]),
    "table-experiment-unknown": Case(["table", "--experiment", "nope"], store="copy"),
    "table-env-uri-missing-file": Case(["table"], env=MISSING_DB),
    "table-uri-missing-file": Case(["table", "--uri", "sqlite:///missing.db"]),
    "table-uri-missing-folder": Case(["table", "--uri", "file:///no/such/mlruns"]),
    "table-uri-unknown-scheme": Case(["table", "--uri", "bogus://x"]),
    "table-uri-empty": Case(["table", "--uri", ""], store="copy"),
    "table-metric-unknown": Case(["table", "--metric", "nope"], store="copy"),
    "table-contract-unknown": Case(["table", "--contract", "nope"], store="copy"),
    "table-checkpoint-unknown": Case(["table", "--checkpoint", "nope"], store="copy"),
    "table-format-unknown": Case(["table", "--format", "nope"], store="copy"),
    "table-tail-k-negative": Case(["table", "--tail-k", "-1"], store="copy"),
    "table-baseline-unknown": Case(["table", "--baseline", "nope"], store="copy"),
    "table-ratio-2": Case(["table", "--ratio", "2"], store="copy"),
    "table-dataset-unknown": Case(["table", "--dataset", "phantum"], store="copy"),
    "table-out-under-a-file": Case(["table", "--out", "blocker/sub"], BLOCKER, store="copy"),
    # -- plot ------------------------------------------------------------------------------------
    "plot-no-store": Case(PLOT),
    "plot-env-uri-missing-file": Case(PLOT, env=MISSING_DB),
    "plot-kind-unknown": Case(["plot", "nope", "--run", "x"], store="copy"),
    "plot-run-unknown": Case(PLOT, store="copy"),
    "plot-slices-0": Case([*PLOT, "--slices", "0"], store="copy"),
    "plot-experiment-unknown": Case([*PLOT, "--experiment", "nope"], store="copy"),
    "plot-out-under-a-file": Case([*PLOT, "--out", "blocker/sub"], BLOCKER, store="copy"),
    # -- predict ---------------------------------------------------------------------------------
    "predict-no-store": Case(PREDICT, {"images/": ""}),
    "predict-images-missing": Case(PREDICT, store="copy"),
    "predict-run-unknown": Case(PREDICT, {"images/": ""}, store="copy"),
    "predict-device-unknown": Case([*PREDICT, "--device", "tpu"], {"images/": ""},
                                   store="copy"),
    "predict-experiment-unknown": Case([*PREDICT, "--experiment", "nope"], {"images/": ""},
                                       store="copy"),
    "predict-out-under-a-file": Case([*PREDICT[:-1], "blocker/sub"],
                                     {"images/": "", **BLOCKER}, store="copy"),
    # -- evaluate --------------------------------------------------------------------------------
    "evaluate-files-missing": Case(["evaluate", "--pred", "p.nii.gz", "--gt", "g.nii.gz"]),
    "evaluate-contract-unknown": Case(["evaluate", "--pred", "p", "--gt", "g",
                                       "--contract", "nope"]),
    "evaluate-dataset-unknown": Case(["evaluate", "--pred", "p", "--gt", "g",
                                      "--dataset", "phantum"]),
    "evaluate-not-nifti": Case(["evaluate", "--pred", "p.nii.gz", "--gt", "g.nii.gz"],
                               {"p.nii.gz": "text", "g.nii.gz": "text"}),
    # -- prepare, splits, bench --------------------------------------------------------------
    "prepare-src-missing": Case(["prepare", "synapse", "--src", "src", "--out", "data"]),
    "prepare-layout-unknown": Case(["prepare", "nope", "--src", "src", "--out", "data"],
                                   {"src/": ""}),
    "prepare-spacing-text": Case(["prepare", "synapse", "--src", "src", "--out", "data",
                                  "--profile", "native", "--spacing", "a,b"], {"src/": ""}),
    "prepare-spacing-two": Case(["prepare", "synapse", "--src", "src", "--out", "data",
                                 "--profile", "native", "--spacing", "1,1"], {"src/": ""}),
    "prepare-spacing-zero": Case(["prepare", "synapse", "--src", "src", "--out", "data",
                                  "--profile", "native", "--spacing", "0,1,1"], {"src/": ""}),
    "prepare-profile-unknown": Case(["prepare", "synapse", "--src", "src", "--out", "data",
                                     "--profile", "nope"], {"src/": ""}),
    "prepare-empty-src": Case(["prepare", "synapse", "--src", "src", "--out", "data"],
                              {"src/": ""}),
    "splits-show-unknown": Case(["splits", "show", "nope"]),
    "splits-show-ratio-2": Case(["splits", "show", "synapse:dhc2023", "--ratio", "2"]),
    "splits-show-split-seed-negative": Case(["splits", "show", "phantom", "--split-seed", "-1"]),
    "splits-verify-unknown": Case(["splits", "verify", "nope"]),
    "bench-steps-0": Case(["bench", "--steps", "0"]),
    "bench-method-unknown": Case(["bench", "--methods", "dhcc"]),
}


def snapshot(folder: Path) -> dict[str, object]:
    """Every file under ``folder`` (relative path -> SHA-256), folders, and the experiments."""
    files: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        files[rel] = (hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file()
                      else "<folder>")
    db = folder / "mlflow.db"
    files["<mlflow.db exists>"] = db.is_file()
    if db.is_file():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            files["<experiments>"] = sorted(
                r[0] for r in con.execute("select name from experiments"))
    return files


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow store with the experiment ``dhcbench`` and one finished seed run."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("store")
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.create_experiment("dhcbench", artifact_location=str(folder / "artifacts"))
    run = client.create_run(exp, run_name="cps-phantom-20p-seed0", tags={
        "dhcbench.role": "seed", "method": "cps", "dataset": "phantom", "ratio": "0.2",
        "seed": "0", "contract": "dhc", "variant": "reference"})
    client.log_metric(run.info.run_id, "test/dice_mean", 50.0)
    client.set_terminated(run.info.run_id, "FINISHED")
    return folder / "mlflow.db"


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: Case, workdir: Path, small_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.store == "copy":
        shutil.copy(small_store, workdir / "mlflow.db")
    for name, text in case.files.items():
        if name.endswith("/"):
            (workdir / name).mkdir(parents=True, exist_ok=True)
        else:
            (workdir / name).write_text(text)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value.format(dir=workdir))
    before = snapshot(workdir)
    res = runner.invoke(app, case.args)
    err = res.stderr.strip()
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and len(err) > 10, err
    assert "Traceback" not in res.output
    assert snapshot(workdir) == before, err


def test_the_table_has_enough_cases() -> None:
    assert len(CASES) >= 100
    commands = {c.args[0] for c in CASES.values()}
    assert commands >= {"run", "tune", "sweep", "table", "plot", "predict", "evaluate",
                        "prepare", "splits", "bench"}


def test_messages_name_the_setting_and_the_source(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few messages in full: they name the option, file or URI source that is wrong."""
    (workdir / "c.yaml").write_text("train: 5\n")
    cases = [
        ([*RUN, "--seed-list", "0,-1"], "--seed-list 0,-1: a seed must be an integer"),
        ([*RUN, "--set", "method.kwargs.beta=5"], "method.kwargs.beta must be a number in (0, 1)"),
        ([*RUN, "--set", "train.lr=.nan"], "train.lr must be a finite positive number"),
        ([*RUN, "--set", "train.unsup_weight=-1"], "train.unsup_weight (λ) must be"),
        ([*RUN, "--set", "train.dropout=1"], "train.dropout must be in [0, 1), got 1.0"),
        ([*RUN, "--config", "c.yaml", "--set", "train.lr=0.01"],
         "c.yaml: train: expected a mapping of settings"),
        ([*TUNE, "--seed", "-3"], "--seed: a seed must be"),
        (["table", "--experiment", "nope"], "no MLflow store here"),
    ]
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and message in res.stderr, (args, res.stderr)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'missing.db'}")
    res = runner.invoke(app, ["table"])
    assert f"MLFLOW_TRACKING_URI=sqlite:///{workdir / 'missing.db'}" in res.stderr
    assert not (workdir / "missing.db").exists()


def test_a_dry_run_sweep_creates_no_store(workdir: Path) -> None:
    before = snapshot(workdir)
    res = runner.invoke(app, ["sweep", "phantom-demo", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "2 new" in " ".join(res.output.split())
    assert snapshot(workdir) == before
