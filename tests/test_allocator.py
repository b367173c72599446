"""The CPU allocator tuning: applied once, skipped when the user or the platform says so."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dhcbench import allocator


def _in_child(code: str, *args: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (mallopt is process-wide) and return its stdout."""
    import os

    child_env = {k: v for k, v in os.environ.items()
                 if k not in (*allocator.GLIBC_VARIABLES, allocator.OPT_OUT)}
    child_env.update(env)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=child_env, check=True)
    return done.stdout.strip()


TUNE = "from dhcbench.allocator import tune_cpu_allocator as t; print(t(), t())"


@pytest.mark.skipif(allocator._glibc() is None, reason="needs glibc")
def test_tuned_once_per_process() -> None:
    assert _in_child(TUNE) == "tuned tuned"


def test_opt_out_and_environment_win() -> None:
    assert _in_child(TUNE, DHCBENCH_CPU_ALLOCATOR="default") == (
        "skipped: DHCBENCH_CPU_ALLOCATOR=default " * 2).strip()
    out = _in_child(TUNE, MALLOC_TRIM_THRESHOLD_="131072")
    assert out == ("skipped: glibc is tuned by the environment " * 2).strip()


def test_not_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(allocator.OPT_OUT, raising=False)
    for name in allocator.GLIBC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator._tune() == "skipped: not glibc"


def test_refused_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        def mallopt(self, param: int, value: int) -> int:
            return 0 if param == allocator.M_MMAP_THRESHOLD else 1

    monkeypatch.delenv(allocator.OPT_OUT, raising=False)
    for name in allocator.GLIBC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator, "_glibc", lambda: Refusing())
    assert allocator._tune() == "failed: mallopt refused a setting"


@pytest.mark.skipif(allocator._glibc() is None, reason="needs glibc")
def test_a_cpu_trainer_tunes_and_importing_does_not(tmp_path: Path) -> None:
    layers = [{"data": {"root": str(tmp_path / "data"),
                        "options": {"volume_size": [16, 32, 32], "num_cases": 8},
                        "patch_size": [16, 16, 16]},
               "train": {"base_filters": 2, "threads": 1, "device": "cpu"},
               "tracking": {"out_dir": str(tmp_path / "runs")}}]
    code = ("import json, sys; from dhcbench.allocator import tune_cpu_allocator as t;"
            "from dhcbench.benchmark.bench import build_trainer;"
            "from dhcbench.benchmark.planning import plan_run;"
            "before = t.cache_info().currsize;"
            "build_trainer(plan_run('cps', 'phantom', 0.2, [0], json.loads(sys.argv[1])));"
            "print(before, t.cache_info().currsize, t())")
    assert _in_child(code, json.dumps(layers)) == "0 1 tuned"
