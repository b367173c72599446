"""Rich progress bars for long work (dataset generation, training, testing)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dhcbench.benchmark.planning import run_name
from dhcbench.benchmark.runner import Reporter
from dhcbench.benchmark.spec import RunSpec


class RichReporter(Reporter):
    """A :class:`Reporter` drawing one bar per seed and one per test pass."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
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
