"""Pretrain on a synthetic scheme, then fine-tune on few real labels (``train --pretrain``).

The pretrained model is drawn for the real data: the scheme draws the data's symbols and
label lengths at the data's input size. It is cached by everything that shapes it (scheme,
alphabet, lengths, model settings, schedule), so a second run, or an audit's many runs, reuse
it. An interrupted pretraining resumes from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from captchalab.data import Sample, split_samples
from captchalab.generators import load_scheme
from captchalab.models import family_class
from captchalab.reporting.progress import ProgressReporter
from captchalab.training.config import TrainConfig
from captchalab.training.data import FolderData
from captchalab.training.distributed import refuse_under_torchrun
from captchalab.training.synthetic import fit_scheme
from captchalab.training.trainer import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    StreamTarget,
    Trainer,
    read_training_folder,
)

PRETRAIN_VERSION = 1  # bump when the recipe changes, so old cache entries are not reused


def cache_root() -> Path:
    """``$CAPTCHALAB_CACHE``, else ``$XDG_CACHE_HOME/captchalab``, else ``~/.cache/captchalab``."""
    if os.environ.get("CAPTCHALAB_CACHE"):
        return Path(os.environ["CAPTCHALAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "captchalab"


def target_of(data_dir: str | Path, config: TrainConfig,
              split: tuple[list[Sample], list[Sample]] | None = None) -> StreamTarget:
    """The symbols, label lengths and fitted input of the real training images, prepared
    exactly as training on them will (same split, same fitted preprocessing)."""
    folder = read_training_folder(data_dir, config, lambda _: None)
    train, val = split or split_samples(folder.samples, config.val_split, config.seed)
    data = FolderData.load(folder, train, val, config, ProgressReporter(False),
                           needs_centres=False)
    return StreamTarget(data.alphabet, data.label_lengths, data.preprocessing)


def pretrain_config(config: TrainConfig, scheme: str) -> TrainConfig:
    """The pretraining run's settings: the user's model, a stream of ``scheme``."""
    epochs = max(1, round(config.pretrain_steps * config.batch_size / config.stream_epoch))
    return replace(config, scheme=scheme, pretrain=None, epochs=epochs, max_minutes=None,
                   init=None, resume=False, overwrite=True, freeze_epochs=0, backbone_lr=1.0,
                   val_split=0.0, unlabelled=None, restarts=None, restart_epochs=None,
                   model_options=family_class(config.model).network_options(
                       config.model_options))


def pretrained_path(scheme: str, target: StreamTarget, config: TrainConfig) -> Path:
    """Where the pretrained model for this scheme, data shape and model lives in the cache."""
    drawn = fit_scheme(load_scheme(scheme), target.alphabet, target.lengths)
    key = json.dumps({
        "scheme": drawn.fingerprint(), "model": config.model, "options": config.model_options,
        "preprocessing": target.preprocessing.to_dict(), "epochs": config.epochs,
        "stream_epoch": config.stream_epoch, "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "seed": config.seed,
        "augment": config.augment, "version": PRETRAIN_VERSION,
    }, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "pretrained" / f"{drawn.name}-{config.model}-{digest}"


def pretrain(data_dir: str | Path, scheme: str, config: TrainConfig,
             log: Callable[[str], None] = print, show_progress: bool = True,
             split: tuple[list[Sample], list[Sample]] | None = None) -> Path:
    """The model file pretrained on ``scheme`` for the data in ``data_dir`` (cached), with
    ``config.pretrain_steps`` optimiser steps."""
    refuse_under_torchrun("`pretrain`")
    target = target_of(data_dir, config, split)
    settings = pretrain_config(config, scheme)
    folder = pretrained_path(scheme, target, settings)
    model_path = folder / MODEL_FILE
    if model_path.is_file() and not (folder / CHECKPOINT_FILE).is_file():
        log(f"using the pretrained model cached at {model_path}")
        return model_path
    resuming = (folder / CHECKPOINT_FILE).is_file()
    log(f"pretraining on {scheme} ({settings.epochs} epochs of {settings.stream_epoch} fresh "
        f"captchas){', resuming' if resuming else ''}; cached at {folder}")
    settings = replace(settings, resume=resuming)
    Trainer(None, folder, settings, log, show_progress, target=target).run()
    (folder / CHECKPOINT_FILE).unlink(missing_ok=True)  # finished: nothing left to resume
    return model_path
