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


class OneCycle:
    """The one-cycle schedule over the planned steps (or the time budget): warm up, anneal,
    end when progress reaches 1."""

    name = "one-cycle"

    def __init__(self, peak: float) -> None:
        self.peak = peak

    def rate(self, state) -> float:
        return one_cycle(state.share, self.peak)

    def update(self, state, accuracy: float, loss: float, seconds_per_step: float,
               time_left: float | None) -> None:
        """Nothing to decide: the plan is fixed."""

    def finished(self, state) -> bool:
        return state.share >= 1.0


class UntilConverged:
    """Warm up, hold the peak rate while validation improves, then cool down and stop.

    The cooldown (a cosine decay over a fifth of the steps done, at least two epochs)
    starts when validation has not improved for ``patience`` of the validations so far
    (once ``min_steps`` are done): ``converged``; or when what is left of the time budget or
    of ``max_steps`` would only just hold it: ``budget`` or ``schedule``. An improvement is
    a higher accuracy, or a validation loss lower by 2% and at least 0.001: a loss that
    shrinks without changing any reading (a model already right on every image) is not
    progress. Its state lives in the loop's state, so a resumed run goes on where it
    stopped.
    """

    name = "until-converged"
    COOLDOWN_SHARE = 0.2
    PATIENCE_SHARE = 0.2
    MIN_PATIENCE = 4

    def __init__(self, peak: float, warmup_steps: int, min_steps: int, max_steps: int,
                 epoch_steps: int, check_steps: int | None = None) -> None:
        self.peak, self.warmup_steps = peak, max(1, warmup_steps)
        self.min_steps, self.max_steps, self.epoch_steps = min_steps, max_steps, epoch_steps
        self.check_steps = epoch_steps if check_steps is None else check_steps  # validations

    def rate(self, state) -> float:
        if state.cooldown_start is not None:
            done = (state.step - state.cooldown_start) / max(1, state.cooldown_steps)
            low = self.peak / 1e3
            return low + (self.peak - low) * (1 + math.cos(math.pi * min(done, 1.0))) / 2
        if state.step < self.warmup_steps:
            return one_cycle(0.15 * state.step / self.warmup_steps, self.peak)  # its warm-up
        return self.peak

    def update(self, state, accuracy: float, loss: float, seconds_per_step: float,
               time_left: float | None) -> None:
        """After a validation: count it, and start the cooldown when it is time."""
        state.validations += 1
        best_accuracy, best_loss = state.monitored
        improved = accuracy > best_accuracy or loss < best_loss - max(1e-3, 0.02 * best_loss)
        if improved:
            state.monitored = (max(accuracy, best_accuracy), min(loss, best_loss))
        state.stale = 0 if improved else state.stale + 1
        if state.cooldown_start is not None:
            return
        length = max(round(self.COOLDOWN_SHARE * state.step), 2 * self.epoch_steps)
        patience = max(self.MIN_PATIENCE, math.ceil(self.PATIENCE_SHARE * state.validations))
        trigger = ""
        if state.stale >= patience and state.step >= self.min_steps:
            trigger = "converged"
        # the next validation comes check_steps later: start now if it would be too late
        elif time_left is not None and (length + self.check_steps) * seconds_per_step >= time_left:
            trigger = "budget"
        elif state.step + self.check_steps + length >= self.max_steps:
            trigger = "schedule"
        if trigger:
            state.cooldown_start, state.trigger = state.step, trigger
            state.cooldown_steps = max(1, min(length, self.max_steps - state.step))

    def finished(self, state) -> bool:
        return state.share >= 1.0 or (
            state.cooldown_start is not None
            and state.step >= state.cooldown_start + state.cooldown_steps)
