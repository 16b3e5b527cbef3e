"""One-cycle learning rate driven by training *progress*, so a time budget reshapes it.

Progress runs from 0 to 1: the larger of steps done / planned steps and time spent / time
budget. A run that must stop early therefore still anneals to a small rate, and a resumed
run continues its schedule from where it stopped instead of starting it again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

STARVED_SHARE = 0.5  # a run that ran less than this share of its planned steps is starved


def one_cycle(progress: float, peak: float, warmup: float = 0.15,
              start_factor: float = 25.0, final_factor: float = 1e3) -> float:
    """Cosine rise from ``peak / start_factor`` to ``peak`` over ``warmup``, then cosine decay."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        low, high, fraction = peak / start_factor, peak, progress / warmup
    else:
        low, high = peak, peak / final_factor
        fraction = (progress - warmup) / (1 - warmup)
    return high + (low - high) * (1 + math.cos(math.pi * fraction)) / 2


@dataclass
class Progress:
    """How far a run is through its schedule, counting steps and, with a budget, time.

    A resumed run starts from the share it had reached (``start_share`` at step
    ``start_step``, after ``spent`` seconds): the rest of its steps and of its budget
    carry it from there to 1, so its learning rate never jumps back up.
    """

    total_steps: int
    budget: float | None = None  # seconds for the whole run, resumed parts included
    start_step: int = 0
    start_share: float = 0.0
    spent: float = 0.0  # seconds trained before this process
    started: float = field(default_factory=lambda: time.monotonic())

    @property
    def elapsed(self) -> float:
        """Seconds of training so far, earlier processes of a resumed run included."""
        return self.spent + time.monotonic() - self.started

    @property
    def budget_left(self) -> float | None:
        return None if self.budget is None else self.budget - self.spent

    def share(self, step: int) -> float:
        """The share of the schedule done at ``step`` (1 ends the run)."""
        if self.start_share <= self.start_step / self.total_steps:  # paced by steps so far
            done = step / self.total_steps
        else:  # a budget had run ahead of the steps: the remaining steps cover the rest
            remaining = max(1, self.total_steps - self.start_step)
            done = self.start_share + (1 - self.start_share) * (step - self.start_step) / remaining
        if self.budget:
            left = max(self.budget - self.spent, 1e-9)
            timed = (time.monotonic() - self.started) / left
            done = max(done, self.start_share + (1 - self.start_share) * timed)
        return done
