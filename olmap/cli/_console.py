"""Console, logging and progress for the CLI (stderr; stdout is kept for results)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


@dataclass
class CliState:
    """Global flags of one invocation (set by the app callback)."""

    verbose: int = 0
    quiet: bool = False
    debug: bool = False


STATE = CliState()


def configure_logging(state: CliState) -> None:
    level = logging.WARNING
    if state.quiet:
        level = logging.ERROR
    elif state.debug or state.verbose >= 2:
        level = logging.DEBUG
    elif state.verbose == 1:
        level = logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        force=True,
        handlers=[RichHandler(console=stderr, show_path=False, show_time=False)],
    )


class _CountColumn(ProgressColumn):
    """``done/total unit``; ``?`` while the total is not known yet."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        whole = float(task.completed).is_integer() and (
            task.total is None or float(task.total).is_integer()
        )
        fmt = ",.0f" if whole else ",.1f"
        total = "?" if task.total is None else format(task.total, fmt)
        return Text(f"{format(task.completed, fmt)}/{total} {self.unit}")


class Advance:
    """Callable that advances a progress task; ``set_total`` for work counted late."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task

    def __call__(self, n: float) -> None:
        self._progress.advance(self._task, n)

    def set_total(self, total: float) -> None:
        self._progress.update(self._task, total=total)

    def describe(self, text: str) -> None:
        """Replace the bar's label (e.g. with the latest loss)."""
        self._progress.update(self._task, description=text)

    def stage(self, text: str, done: float, total: float) -> None:
        """Show ``done`` of ``total`` for a named stage (multi-stage jobs: one bar)."""
        self._progress.update(self._task, description=text, completed=done, total=total)


@contextmanager
def progress_bar(description: str, total: float | None, unit: str = "") -> Iterator[Advance]:
    """A rich progress bar on stderr; yields ``advance(n)``.

    Silent with ``--quiet`` and when stderr is not a terminal.
    """
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _CountColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    # Bars are for people at a terminal; in logs and pipes they are noise (and blank lines).
    disable = STATE.quiet or not stderr.is_terminal
    with Progress(*columns, console=stderr, disable=disable, transient=False) as progress:
        task = progress.add_task(description, total=total)
        try:
            yield Advance(progress, task)
        except BaseException:
            # A failed run ends with its one error line, not with a half-filled bar above it.
            progress.live.transient = True
            raise
