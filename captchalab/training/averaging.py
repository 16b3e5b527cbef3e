"""An exponential moving average (EMA) of a model's weights, the model that is validated
and kept: it moves less from batch to batch than the weights being trained, which a small
validation set otherwise turns into a lucky or an unlucky epoch."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """``model``'s weights averaged over the steps so far, with ``decay`` per step.

    The first steps use a smaller decay (``(1 + n) / (10 + n)`` after ``n`` updates), so the
    average follows the fast early changes instead of dragging the random start along.
    Batch-norm statistics are averaged too; integer buffers (batch counts) are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"`ema` decay must be between 0 and 1, got {decay}")
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ours = self.model.state_dict()
        averaged, latest = [], []
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(ours[name])
                latest.append(value.detach())
            else:
                ours[name].copy_(value)
        # every tensor in one call each (a GPU launches a handful of kernels, not hundreds)
        torch._foreach_mul_(averaged, decay)
        torch._foreach_add_(averaged, latest, alpha=1 - decay)
