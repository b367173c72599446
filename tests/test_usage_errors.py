"""Errors the command-line parser finds itself (an unknown command or option, a value of the
wrong type) are one line on stderr and exit code 2, like every other bad input, when the
command is run as users run it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--seeds", "abc"], "error: Invalid value for '--seeds'"),
    (["run", "--nope"], "error: No such option: --nope (see `"),
    (["nosuch"], "error: No such command 'nosuch'."),
    (["table", "--metric"], "error: Option '--metric' requires an argument."),
    (["methods", "dhc", "x"], "error: Got unexpected extra argument"),
])
def test_parser_errors_are_one_line_exit_2(tmp_path, args: list[str], message: str) -> None:
    res = subprocess.run([sys.executable, "-m", "dhcbench", *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(message), res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_still_exits_0(tmp_path) -> None:
    res = subprocess.run([sys.executable, "-m", "dhcbench", "run", "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--method" in res.stdout and res.stderr == ""


def test_version(tmp_path) -> None:
    from dhcbench import __version__

    res = subprocess.run([sys.executable, "-m", "dhcbench", "--version"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"dhcbench {__version__}"


def test_mlflow_log_lines_are_silenced(tmp_path, data_dir) -> None:
    # A first run creates the store: MLflow's own INFO lines must not reach the terminal.
    from .conftest import tiny_args

    env = {**os.environ, "DHCBENCH_DATA": str(data_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_LOGGING_LEVEL", None)
    res = subprocess.run([sys.executable, "-m", "dhcbench", "run", "--method", "fully",
                          *tiny_args(epochs=0)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "mlflow.db").is_file()
    assert "INFO" not in res.stderr and "mlflow" not in res.stderr.lower()
