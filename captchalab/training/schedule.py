"""One-cycle learning rate driven by training *progress*, so a time budget reshapes it."""

from __future__ import annotations

import math


def one_cycle(progress: float, peak: float, warmup: float = 0.15,
              start_factor: float = 25.0, final_factor: float = 1e3) -> float:
    """Cosine rise from ``peak / start_factor`` to ``peak`` over ``warmup``, then cosine decay.

    ``progress`` runs from 0 to 1: the larger of steps done / planned steps and time spent /
    time budget, so training that must stop early still anneals to a small rate.
    """
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        low, high, fraction = peak / start_factor, peak, progress / warmup
    else:
        low, high = peak, peak / final_factor
        fraction = (progress - warmup) / (1 - warmup)
    return high + (low - high) * (1 + math.cos(math.pi * fraction)) / 2
