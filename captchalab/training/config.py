"""The training recipe's settings and defaults, importable without torch (the CLI shows them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from captchalab.data.preprocess import DEFAULT_HEIGHT

TARGET_STEPS = 3000  # default schedule length when --epochs is not given
PRETRAIN_STEPS = 3000  # optimiser steps of pretraining (about 96k synthetic captchas)
COMPARE_MODELS = ("crnn", "multihead", "multihead-spatial", "slice", "heatmap", "multilabel")
AUDIT_SIZES = "25,50,100,200,400,all"
AUDIT_MINUTES = 25.0  # the whole audit's training budget
AUDIT_VAL_SPLIT = 0.2


@dataclass
class TrainConfig:
    """Everything that shapes a training run; the defaults are the recipe for any scheme."""

    model: str = "crnn"
    epochs: int | None = None  # None: TARGET_STEPS x the family's schedule_scale, 15..300 epochs
    max_minutes: float | None = None
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    val_split: float = 0.1
    seed: int = 0
    device: str = "auto"
    height: int = DEFAULT_HEIGHT
    invert: bool = False  # light text on a dark page: invert before anything else
    deskew: bool = False  # level the text's midline, normalise its height (seed 002)
    alphabet: str | None = None
    case_insensitive: bool = False
    skip_bad: bool = False
    resume: bool = False
    overwrite: bool = False  # replace a model already in the output folder
    augment: bool = True
    decoding: str = "beam"
    beam_width: int = 8
    centres: str | None = None  # annotations file for the heatmap family (default DATA/...)
    init: str | None = None  # start from this model file's weights (its preprocessing too)
    scheme: str | None = None  # train on this synthetic scheme, drawn on the fly
    stream_epoch: int = 4096  # synthetic images per epoch (each epoch draws fresh ones)
    stream_val: int = 512  # synthetic validation images (drawn once)
    freeze_epochs: int = 0  # keep the backbone fixed for this many epochs (with init)
    backbone_lr: float = 1.0  # the backbone's learning rate as a fraction of --lr
    model_options: dict = field(default_factory=dict)  # e.g. {"slices": [54, 110, ...]}
    stop_epoch: int | None = None  # pause after this epoch, checkpoint kept (staged restarts)
