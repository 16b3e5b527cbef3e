"""``train``: the one entry to training, whichever recipe the settings ask for.

The default recipe trains one model. ``pretrain`` first trains on a synthetic scheme
(cached) and fine-tunes from it; ``restarts`` runs seed 002's staged restarts;
``unlabelled`` self-trains on confident readings of unlabelled images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from captchalab.data import Sample
from captchalab.training.config import TrainConfig
from captchalab.training.pretrain import pretrain
from captchalab.training.restarts import train_with_restarts
from captchalab.training.self_training import self_train
from captchalab.training.trainer import Trainer, TrainResult


def train(data_dir: str | Path | None, out_dir: str | Path, config: TrainConfig | None = None,
          log: Callable[[str], None] = print, show_progress: bool = True,
          split: tuple[list[Sample], list[Sample]] | None = None) -> TrainResult:
    """Train a recognizer on a labelled folder (or on ``config.scheme`` with no folder);
    writes model.safetensors, metrics.jsonl, curves.png, summary.json and a checkpoint.

    ``split`` fixes the training and validation samples (of that folder) instead of
    ``config.val_split``: an audit trains on subsets against one validation set.
    """
    config = (config or TrainConfig()).validate(has_data=data_dir is not None)
    if config.pretrain:
        start = pretrain(data_dir, config.pretrain, config, log, show_progress, split=split)
        config = replace(config, init=str(start), pretrain=None)
    if config.unlabelled:
        return self_train(data_dir, out_dir, config, log, show_progress, split).result
    if config.restarts:
        return train_with_restarts(data_dir, out_dir, config, log, show_progress).result
    return Trainer(data_dir, out_dir, config, log, show_progress, split).run()
