"""Training checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is a model file (safetensors + model card) whose tensors hold the current
weights (``model.*``), the best epoch's weights (``best.*``), the optimiser's state
(``optimizer.*``) and the CPU random generator (``rng.cpu``), and whose metadata holds the
loop's state as JSON (:class:`LoopState`). Nothing is pickled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from captchalab.runtime.model_file import (
    ModelCard,
    ModelFileError,
    load_model_file,
    save_model_file,
)
from captchalab.runtime.torch_backend import state_to_numpy

CHECKPOINT_VERSION = 2
RNG_TENSOR = "rng.cpu"  # the CPU random generator's state


@dataclass
class LoopState:
    """What the training loop carries from one epoch to the next."""

    epoch: int = 0  # epochs done
    step: int = 0  # optimiser steps done
    elapsed: float = 0.0  # seconds trained
    share: float = 0.0  # share of the schedule done (1 ends the run)
    history: list[dict] = field(default_factory=list)  # one record per validation
    best_score: tuple[float, float] = (-1.0, float("-inf"))  # (accuracy, -loss) of the best
    best_epoch: int | None = None
    # why the run ended: "schedule", "converged", "budget" or "paused" ("" while running)
    ended: str = ""
    average_updates: int = 0  # steps the weight average has seen (with ema)
    # the until-converged schedule: validations done, how many since the best, the cooldown
    validations: int = 0
    stale: int = 0
    monitored: tuple[float, float] = (-1.0, float("inf"))  # best accuracy and loss so far
    cooldown_start: int | None = None
    cooldown_steps: int = 0
    trigger: str = ""  # what started the cooldown: "converged", "budget" or "schedule"
    # chained one-cycles: this cycle's number and where it started
    cycle: int = 1
    cycle_start_step: int = 0
    cycle_start_epoch: int = 0
    cycle_start_elapsed: float = 0.0
    cycle_best_before: float = -1.0  # the best validation accuracy before this cycle
    stale_cycles: int = 0  # cycles in a row, up to the last, that did not improve on it
    why: str = ""  # how the run ended, in words


def torch_state(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}


@dataclass
class Checkpoint:
    """A checkpoint as read back: weights, optimiser state, random state and loop state."""

    card: ModelCard
    model: dict[str, np.ndarray]
    best: dict[str, np.ndarray]
    average: dict[str, np.ndarray]  # the weight average's state (empty without ema)
    optimizer: dict[int, dict[str, np.ndarray]]
    param_groups: list
    rng: np.ndarray | None
    state: LoopState

    def restore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.load_state_dict({
            "state": {i: {k: torch.from_numpy(np.array(v)) for k, v in slots.items()}
                      for i, slots in self.optimizer.items()},
            "param_groups": self.param_groups})


def save_checkpoint(path: Path, model: torch.nn.Module, best: dict[str, np.ndarray],
                    optimizer: torch.optim.Optimizer, card: ModelCard, state: LoopState,
                    average: torch.nn.Module | None = None) -> Path:
    """Write the checkpoint atomically: a reader sees the previous one or this one."""
    tensors = {f"model.{k}": v for k, v in state_to_numpy(model).items()}
    tensors |= {f"best.{k}": v for k, v in best.items()}
    if average is not None:
        tensors |= {f"ema.{k}": v for k, v in state_to_numpy(average).items()}
    optimizer_state = optimizer.state_dict()
    for index, slots in optimizer_state["state"].items():
        for key, value in slots.items():
            tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().numpy().copy()
    tensors[RNG_TENSOR] = torch.get_rng_state().numpy().copy()
    loop = asdict(state) | {"best_score": list(state.best_score),
                            "monitored": list(state.monitored)}
    return save_model_file(path, tensors, card, {
        "version": CHECKPOINT_VERSION, "loop": loop,
        "param_groups": optimizer_state["param_groups"]})


def load_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint written by :func:`save_checkpoint`; a one-line error for anything else."""
    loaded = load_model_file(path)
    saved = loaded.checkpoint or {}
    if saved.get("version") != CHECKPOINT_VERSION:
        raise ModelFileError(f"{path}: not a checkpoint this captchalab can resume (written by "
                             "another version); start a new run")
    parts: dict[str, dict[str, np.ndarray]] = {"model": {}, "best": {}, "ema": {}}
    optimizer: dict[int, dict[str, np.ndarray]] = {}
    for name, value in loaded.tensors.items():
        kind, _, rest = name.partition(".")
        if kind in parts:
            parts[kind][rest] = value
        elif kind == "optimizer":
            index, _, key = rest.partition(".")
            optimizer.setdefault(int(index), {})[key] = value
    loop = dict(saved["loop"])
    loop["best_score"] = tuple(loop["best_score"])
    loop["monitored"] = tuple(loop.get("monitored", LoopState().monitored))
    return Checkpoint(loaded.card, parts["model"], parts["best"], parts["ema"], optimizer,
                      saved["param_groups"], loaded.tensors.get(RNG_TENSOR), LoopState(**loop))
