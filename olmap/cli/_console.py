"""Console, logging and progress for the CLI (stderr; stdout is kept for results)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

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


@contextmanager
def progress_bar(
    description: str, total: float, unit: str = ""
) -> Iterator[Callable[[float], None]]:
    """A rich progress bar on stderr; yields ``advance(n)``. Silent with ``--quiet``."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.1f}/{task.total:,.1f} " + unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=stderr, disable=STATE.quiet, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
