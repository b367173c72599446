"""Rich progress bars for long work (dataset generation, training, testing).

The time left is :class:`SteadyTimeRemaining`: the task's mean pace since its first step,
so it neither blanks out nor jumps while a seed evaluates between epochs.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from dhcbench.benchmark.planning import RunPlan, run_name, training_cases
from dhcbench.benchmark.runner import Reporter
from dhcbench.benchmark.spec import RunSpec


class SteadyTimeRemaining(ProgressColumn):
    """Time left of a task from its mean pace since its first step, once there is one.

    rich's own column divides by the speed of the last 30 s of updates and shows
    ``-:--:--`` when that window holds fewer than two of them: after every evaluation
    longer than 30 s, and all along when one step takes longer. Here the pace is the steps
    done since the first one the column saw (a resumed seed starts part-way) over the time
    they took, pauses (evaluations, checkpoints) included, so the estimate covers them too
    and, once known, stays shown until the task ends.
    """

    max_refresh = 0.5

    def __init__(self) -> None:
        super().__init__()
        self._first: dict[TaskID, tuple[float, float]] = {}

    def seconds_left(self, task: Task) -> float | None:
        """Seconds until ``task`` is done at its mean pace; None before a second step."""
        if task.finished:
            return 0.0
        elapsed = task.elapsed
        if task.total is None or elapsed is None or task.completed <= 0:
            return None
        first = self._first.setdefault(task.id, (elapsed, task.completed))
        done, took = task.completed - first[1], elapsed - first[0]
        if done <= 0 or took <= 0:
            return None
        return max(0.0, (task.total - task.completed) * took / done)

    def render(self, task: Task) -> Text:
        """``H:MM:SS`` left, or ``-:--:--`` until a pace is known."""
        left = self.seconds_left(task)
        if left is None:
            return Text("-:--:--", style="progress.remaining")
        minutes, seconds = divmod(int(left + 0.5), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours:d}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


def run_header(plan: RunPlan, ratio: float) -> str:
    """The line ``dhcbench run`` prints before training: method, data it uses, seeds.

    Only the cases the method's data mode trains on are counted
    (:func:`~dhcbench.benchmark.planning.training_cases`).
    """
    from dhcbench.methods import METHODS

    spec = plan.specs[0]
    cases = training_cases(plan, METHODS.get(spec.method.name).data_mode)
    return (f"{spec.method.name} on {spec.data.name} {ratio:g}: {cases},"
            f" seeds {', '.join(str(s.seed) for s in plan.specs)}")


class RichReporter(Reporter):
    """A :class:`Reporter` drawing one bar per seed and one per test pass."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            SteadyTimeRemaining(),
            console=console,
        )
        self._train: Any = None
        self._test: dict[str, Any] = {}
        self._prepare: Any = None
        self._name = ""
        super().__init__(
            start_seed=self._start_seed,
            iteration=self._iteration,
            evaluated=self._evaluated,
            testing=self._testing,
            message=self._message,
        )

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def progress_callback(self, title: str):  # noqa: ANN201
        """A (done, total) callback drawing its own bar titled ``title``."""
        task = None

        def update(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = self.progress.add_task(title, total=total)
            self.progress.update(task, completed=done)

        return update

    def preparing(self, done: int, total: int) -> None:
        """Advance the bar of dataset generation to ``done`` of ``total`` cases.

        The bar is created on the first call; pass this method as the ``on_prepare``
        callback of :func:`dhcbench.benchmark.planning.plan_run`.
        """
        if self._prepare is None:
            self._prepare = self.progress.add_task("generating phantom", total=total)
        self.progress.update(self._prepare, completed=done)

    def _start_seed(self, spec: RunSpec, total: int) -> None:
        self._name = run_name(spec, spec.seed)
        self._train = self.progress.add_task(f"train {self._name}", total=total)
        self._test = {}

    def _iteration(self, epoch: int, it: int) -> None:
        if self._train is not None:
            self.progress.update(self._train, completed=it)

    def _evaluated(self, spec: RunSpec, epoch: int, dice: float) -> None:
        self._message(f"{self._name} epoch {epoch}: eval Dice {dice:.2f} %")

    def _testing(self, which: str, done: int, total: int) -> None:
        if which not in self._test:
            self._test[which] = self.progress.add_task(f"test {self._name} ({which})",
                                                       total=total)
        self.progress.update(self._test[which], completed=done)

    def _message(self, text: str) -> None:
        self.console.log(text, log_locals=False, _stack_offset=2)
