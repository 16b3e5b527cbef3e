"""Progress bars for long work (rich), silent when disabled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressReporter:
    """``with reporter.task("training", total) as advance: advance(status=...)``."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    @contextmanager
    def task(self, description: str, total: int, completed: int = 0
             ) -> Iterator[Callable[..., None]]:
        if not self.enabled:
            yield lambda status=None: None
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task(description, total=total, completed=completed, status="")

            def advance(status: str | None = None) -> None:
                if status is None:
                    progress.advance(task)
                else:
                    progress.update(task, advance=1, status=status)

            yield advance
