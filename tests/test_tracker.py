"""The Tracker protocol: both implementations satisfy it, and the engine runs against the
in-memory one exactly as against MLflow (parent and child runs, statuses, metrics,
artifacts, seed hooks, a failing hook leaving its runs FAILED)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dhcbench.benchmark.memory_tracker import MemoryTracker
from dhcbench.benchmark.planning import default_layers, plan_run
from dhcbench.benchmark.runner import Reporter, SeedReport, execute
from dhcbench.benchmark.tracking import PARENT, ROLE, Tracker, open_tracker
from dhcbench.errors import UserError
from tests.conftest import TINY_SETTINGS


def _plan(seeds: list[int]):  # noqa: ANN202
    layers = default_layers(None, [*TINY_SETTINGS, "train.epochs=1",
                                   "tracking.log_checkpoint=false"])
    return plan_run("cps", "phantom", 0.2, seeds, layers)


def test_both_trackers_satisfy_the_protocol(workdir: Path) -> None:
    del workdir
    assert isinstance(MemoryTracker(), Tracker)
    assert isinstance(open_tracker(None, "protocol"), Tracker)


def test_a_run_against_the_memory_tracker(workdir: Path) -> None:
    del workdir
    tracker = MemoryTracker()
    seen: list[SeedReport] = []
    parent = execute(_plan([0, 1]), tracker, resume=False, report=Reporter(),
                     after_seed=[seen.append])
    assert tracker.get(parent).info.status == "FINISHED"
    assert tracker.get(parent).data.tags[ROLE] == "parent"
    children = tracker.children(parent)
    assert sorted(c.data.tags["seed"] for c in children) == ["0", "1"]
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        assert child.data.tags[PARENT] == parent
        assert 0.0 <= child.data.metrics["test/dice_mean"] <= 100.0
        curve = tracker.history(child.info.run_id, "eval/")["eval/dice_mean"]
        assert [step for step, _ in curve] == [0, 1]  # epochs=1 runs epochs 0 and 1
        assert "spec.yaml" in child.artifacts
        assert "metrics/test_cases_best.csv" in child.artifacts
    assert [s.run_id for s in seen] == [c.info.run_id for c in reversed(children)]
    assert "test/dice_mean_std" in tracker.get(parent).data.metrics
    # the seed runs of the experiment, as the table reads them
    found = tracker.search(f"tags.`{ROLE}` = 'seed' and attributes.status = 'FINISHED'")
    assert {r.info.run_id for r in found} == {c.info.run_id for c in children}


def test_a_failing_hook_marks_both_runs_failed(workdir: Path) -> None:
    del workdir
    tracker = MemoryTracker()

    def broken(seed: SeedReport) -> None:
        raise RuntimeError(f"hook failed on {seed.run_id}")

    with pytest.raises(RuntimeError, match="hook failed"):
        execute(_plan([0]), tracker, resume=False, report=Reporter(), after_seed=[broken])
    assert sorted(r.info.status for r in tracker.runs.values()) == ["FAILED", "FAILED"]


def test_memory_tracker_refuses_a_filter_it_cannot_answer() -> None:
    tracker = MemoryTracker()
    run = tracker.start_run("r", {"a": 1})
    assert [r.info.run_id for r in tracker.search("tags.`a` = '1'")] == [run]
    assert tracker.search("tags.a = '2'") == []
    with pytest.raises(ValueError, match="cannot answer"):
        tracker.search("metrics.x > 1")
    with pytest.raises(UserError, match="no artifact"):
        tracker.download_artifact(run, "missing.txt", Path("."))
