"""Distillation: a smaller student learns a trained teacher's soft outputs beside the labels.

The student reads like the teacher (its preprocessing, alphabet and family, fewer channels);
each training batch goes through both networks, and the loss adds to the labels' loss the
mean per-position KL divergence from the teacher's output distribution to the student's.
Unlabelled images join the training set with the teacher's confident readings as labels,
and their soft outputs teach the rest.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from captchalab.models import Family, build
from captchalab.runtime.model_file import ModelFile
from captchalab.training.checkpoint import torch_state
from captchalab.training.config import ConfigError

SOFT_DECODERS = ("ctc", "positions")  # families whose outputs are log-probabilities


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over images and positions of KL(teacher || student); both ``(N, T, classes)``
    log-probabilities. Zero when the student's distributions are the teacher's."""
    positions = student.shape[0] * student.shape[1]
    return F.kl_div(student, teacher, log_target=True, reduction="sum") / positions


def check_teacher(source: ModelFile, path: str | Path) -> None:
    """Refuse a teacher whose outputs are not per-position symbol probabilities."""
    if source.card.decoder not in SOFT_DECODERS:
        raise ConfigError(f"{path}: a {source.card.family} model's outputs are not "
                          "per-position symbol probabilities; distil a crnn, multihead or "
                          "slice model")


def load_teacher(source: ModelFile, path: str | Path, device: torch.device) -> Family:
    """The teacher's network in eval mode, frozen, on ``device``."""
    check_teacher(source, path)
    network = build(source.card.family, **source.card.config)
    network.load_state_dict(torch_state(source.tensors))
    network.eval().requires_grad_(False)
    return network.to(device)


def check_student(student: Family, teacher: Family, height: int, width: int) -> None:
    """Refuse a student whose outputs cannot be compared with the teacher's."""
    probe = torch.zeros(2, 1, height, width, device=next(teacher.parameters()).device)
    was_training = student.training
    student.eval()
    with torch.no_grad():
        ours, theirs = student(probe).shape, teacher(probe).shape
    student.train(was_training)
    if ours != theirs:
        raise ConfigError(f"the student's outputs {tuple(ours)[1:]} differ from the teacher's "
                          f"{tuple(theirs)[1:]}; keep the teacher's family and input")
