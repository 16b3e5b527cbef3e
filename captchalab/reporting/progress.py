"""Progress bars for long work (rich), silent when disabled.

A bar counts items (``12/400``) or, with ``percent``, a share of the work whose remaining
time rich estimates from how fast that share grows: a training run measures its share by
steps or by its time budget, whichever is further, so its estimate follows the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressReporter:
    """``with reporter.task("training", total) as advance: advance(status=...)``.

    ``advance()`` counts one item done; ``advance(to=x)`` sets the work done to ``x`` and
    ``advance(to=x, total=n)`` also the work there is, once it is known.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    @contextmanager
    def task(self, description: str, total: float | None, completed: float = 0,
             percent: bool = False) -> Iterator[Callable[..., None]]:
        if not self.enabled:
            yield lambda status=None, to=None, total=None: None
            return
        count = TaskProgressColumn() if percent else MofNCompleteColumn()
        columns = (TextColumn("{task.description}"), BarColumn(), count,
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task(description, total=total, completed=completed, status="")

            def advance(status: str | None = None, to: float | None = None,
                        total: float | None = None) -> None:
                fields = {} if status is None else {"status": status}
                if total is not None:
                    fields["total"] = total
                if to is None:
                    progress.update(task, advance=1, **fields)
                else:
                    progress.update(task, completed=to, **fields)

            yield advance
