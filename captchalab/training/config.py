"""The training recipe's settings and defaults, importable without torch (the CLI shows them).

``TrainConfig.validate()`` holds every rule about which options go together; the CLI,
restarts and self-training all call it. Its errors name options by their Python names in
backticks (`` `max_minutes` ``), which the CLI shows as its flags (``--max-minutes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from captchalab.data.preprocess import GREY_MODES

TARGET_STEPS = 3000  # default schedule length when epochs is not given
PRETRAIN_STEPS = 3000  # optimiser steps of pretraining (about 96k synthetic captchas)
FINE_TUNE_STEPS = 600  # the short recipe from a live model (fine_tune)
FINE_TUNE_RATE = 0.3  # ... at this share of the peak learning rate
# a run from the base model with few labels peaks at a lower share of learning_rate: the full
# rate wipes out what the base reads before a few dozen labels can teach the scheme, while a
# full training set gains from it (BENCHMARKS.md, "The base model": the rate from the base)
FROM_BASE_RATE = 1 / 3  # the share at 66 training images or fewer ...
FROM_BASE_FULL_RATE_IMAGES = 600  # ... the whole rate from here, the square root between


def from_base_rate(train_count: int) -> float:
    """The share of ``learning_rate`` a run from the base model peaks at."""
    return min(1.0, max(FROM_BASE_RATE, (train_count / FROM_BASE_FULL_RATE_IMAGES) ** 0.5))


MAX_CYCLES = 4  # the default run: one-cycles back to back while validation improves ...
# ... and while the next fits in the run's budget (the first cycle always runs):
DEFAULT_BUDGET_MINUTES = 15.0  # from BUDGET_FULL_IMAGES training images, in proportion below
BUDGET_FULL_IMAGES = 600  # (100 images: 2.5 minutes), ...
MIN_BUDGET_MINUTES = 1.0  # ... and never under this


def default_budget_minutes(train_count: int) -> float:
    """The default run's time budget for ``train_count`` training images: a few dozen labels
    are fitted in a few minutes, a full set gets DEFAULT_BUDGET_MINUTES."""
    share = min(1.0, train_count / BUDGET_FULL_IMAGES)
    return max(MIN_BUDGET_MINUTES, DEFAULT_BUDGET_MINUTES * share)


SCHEDULES = ("one-cycle", "until-converged")  # the learning-rate schedules
DEFAULT_PSEUDO_THRESHOLD = 0.9  # P(reading) a pseudo-label needs (self-training)
DEFAULT_SELF_TRAINING_ROUNDS = 3


# the base model's run (training/base_model.py); here so the CLI reads them without torch
BASE_HEIGHT = 32
BASE_EPOCHS = 300  # of BASE_EPOCH_IMAGES fresh images: about 2.5 M images, 38 k steps
BASE_EPOCH_IMAGES = 8192
BASE_BATCH = 64


class ConfigError(ValueError):
    """Options that do not go together; the message names them in backticks."""


@dataclass
class TrainConfig:
    """Everything that shapes a training run; the defaults are the recipe for any scheme."""

    model: str = "crnn"
    epochs: int | None = None  # None: TARGET_STEPS x the family's schedule_scale, 15..300 epochs
    max_minutes: float | None = None  # the whole run's time budget (a resumed run's too)
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    val_split: float = 0.1
    seed: int = 0
    device: str = "auto"
    height: int | None = None  # None: from the images and labels (fitted_height)
    grey: str = "luma"  # colour to grey: "luma", or "darkest" channel (pale coloured glyphs)
    invert: bool = False  # light text on a dark page: invert before anything else
    deskew: bool = False  # level the text's midline, normalise its height (seed 002)
    alphabet: str | None = None
    case_insensitive: bool = False
    skip_bad: bool = False
    resume: bool = False
    overwrite: bool = False  # replace a model already in the output folder
    augment: bool = True
    # also elastic warp, blur, thin occluding lines and dots; None: the family's default
    augment_captcha: bool | None = None
    # the captcha-shaped changes' sizes, as a multiple (1.75 on hard62: no gain, BENCHMARKS.md)
    augment_strength: float = 1.0
    ema: float | None = 0.999  # validate and keep a moving average of the weights (decay)
    width_multiplier: float = 1.0  # channels of the backbone and the heads, as a multiple
    schedule: str = "one-cycle"  # or "until-converged": hold the peak rate while it improves
    # one-cycles run back to back (warm restarts) while each improves validation; None:
    # up to MAX_CYCLES when `epochs` is not given, else 1
    cycles: int | None = None
    cycle_patience: int = 1  # chaining stops after this many cycles in a row that did not improve
    stretch: float = 3.0  # until-converged: at most this many times the planned steps
    decoding: str = "beam"
    beam_width: int = 8
    model_options: dict = field(default_factory=dict)  # the family's: {"slices": [...]}, ...
    # starting from another model (few labels)
    init: str | None = None  # start from this model file's weights (its preprocessing too)
    from_scratch: bool = False  # a crnn run does not start from the packaged base model
    log_epochs: bool = False  # a log line per validated epoch (for long background runs)
    pretrain: str | None = None  # first pretrain on this synthetic scheme (cached), then init
    pretrain_steps: int = PRETRAIN_STEPS
    scheme: str | None = None  # train on this synthetic scheme, drawn on the fly
    stream_epoch: int = 4096  # synthetic images per epoch (each epoch draws fresh ones)
    stream_val: int = 512  # synthetic validation images (drawn once)
    fine_tune: bool = False  # the short recipe from `init`: fewer steps, a lower peak rate
    balance_folders: bool | None = None  # several folders weigh the same; None: with fine_tune
    # distillation: learn a trained teacher's soft outputs (its preprocessing and alphabet)
    teacher: str | None = None
    distill_weight: float = 1.0  # weight of the teacher's term beside the labels' loss
    freeze_epochs: int = 0  # keep the backbone fixed for this many epochs (with init)
    backbone_lr: float = 1.0  # the backbone's learning rate as a fraction of learning_rate
    # seed 002's recipes
    restarts: tuple[int, ...] | None = None  # runs per stage, e.g. (20, 10, 1)
    restart_epochs: tuple[int, ...] | None = None  # the epoch each stage but the last ends at
    unlabelled: str | None = None  # self-train on the readings of this folder's images
    pseudo_threshold: float = DEFAULT_PSEUDO_THRESHOLD
    self_training_rounds: int = DEFAULT_SELF_TRAINING_ROUNDS
    stop_epoch: int | None = None  # pause after this epoch, checkpoint kept (staged restarts)
    constraints: dict = field(default_factory=dict)  # the model's default constrained reading

    @property
    def captcha_augmentation(self) -> bool:
        """Whether training adds the captcha-shaped changes: ``augment_captcha``, or the
        family's default (on for crnn, where it was measured to help)."""
        if self.augment_captcha is not None:
            return self.augment_captcha
        from captchalab.models import family_class

        return family_class(self.model).captcha_augmentation

    @property
    def cycle_limit(self) -> int:
        """The most one-cycles the run may chain: ``cycles``, or MAX_CYCLES for the default
        schedule of a plain run (1 with a set length, a short fine-tune, a synthetic stream,
        pretraining, staged restarts or the until-converged schedule)."""
        if self.cycles is not None:
            return self.cycles
        plain = (self.epochs is None and not self.fine_tune and not self.scheme
                 and self.schedule == "one-cycle" and not self.restarts
                 and self.stop_epoch is None)
        return MAX_CYCLES if plain else 1

    def cycle_budget(self, train_count: int) -> float | None:
        """Seconds the whole run may take once its first cycle is done: ``max_minutes``, or
        the default budget for ``train_count`` training images when the run may chain
        cycles."""
        if self.max_minutes:
            return self.max_minutes * 60
        return default_budget_minutes(train_count) * 60 if self.cycle_limit > 1 else None

    @property
    def centres(self) -> str | None:
        """The centres file a heatmap trains on, when one is given."""
        return self.model_options.get("centres")

    def validate(self, has_data: bool | None = None) -> TrainConfig:
        """Raise a :class:`ConfigError` for options that do not go together; ``has_data``
        says whether a labelled folder is given (``None``: not known here)."""
        from captchalab.models import families_taking, family_class
        from captchalab.runtime.constraints import Constraints
        from captchalab.runtime.decoders import get_decoder

        family = family_class(self.model)
        try:
            Constraints.from_dict(self.constraints)
        except ValueError as error:
            raise ConfigError(f"`constraints`: {error}") from None
        for name in self.model_options:
            takers = families_taking(name)
            if self.model not in takers:
                raise ConfigError(f"`{name}` applies to the {' and '.join(takers) or 'no'} "
                                  f"family, not {self.model}")
        if has_data is not None and has_data == bool(self.scheme):
            raise ConfigError("give a folder of labelled images or `scheme`, not both")
        if self.pretrain and (self.init or self.scheme):
            raise ConfigError("`pretrain` makes its own starting model: drop `init` and "
                              "`scheme`")
        if self.from_scratch and (self.init or self.pretrain):
            raise ConfigError("`from_scratch` starts from fresh weights: drop `init` and "
                              "`pretrain`, or `from_scratch`")
        if (self.deskew or self.invert or self.grey != "luma") and (
                (self.init and self.init != "base") or self.resume or self.teacher):
            raise ConfigError("`init`, `resume` and `teacher` keep the preprocessing of the "
                              "model they start from or learn from; `deskew`, `invert` and "
                              "`grey` apply to new runs")
        if self.fine_tune and not (self.init or self.pretrain or self.resume):
            raise ConfigError("`fine_tune` continues a trained model: give it with `init`")
        if (self.init or self.pretrain) and self.resume:
            raise ConfigError("`init` and `pretrain` start a new run; `resume` continues one")
        if self.deskew and family.needs_centres:
            raise ConfigError(f"`deskew` moves characters away from their annotated centres; "
                              f"the {self.model} family trains on centres")
        if self.teacher and (self.init or self.pretrain or self.scheme or self.restarts
                             or self.unlabelled):
            raise ConfigError("`teacher` trains a fresh student on labelled images: drop "
                              "`init`, `pretrain`, `scheme`, `restarts` and `unlabelled` (give "
                              "unlabelled images to distill itself)")
        if self.distill_weight < 0:
            raise ConfigError(f"`distill_weight` is 0 or more, not {self.distill_weight:g}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ConfigError(f"`ema` is a decay per step between 0 and 1, e.g. 0.999, not "
                              f"{self.ema:g}")
        if self.augment_strength < 0:
            raise ConfigError(f"`augment_strength` is 0 or more, not {self.augment_strength:g}")
        if not 0.25 <= self.width_multiplier <= 4.0:
            raise ConfigError(f"`width_multiplier` scales the channels, from 0.25 to 4, not "
                              f"{self.width_multiplier:g}")
        if self.grey not in GREY_MODES:
            raise ConfigError(f"`grey` is one of {', '.join(GREY_MODES)}, not {self.grey!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"`schedule` is one of {', '.join(SCHEDULES)}, not "
                              f"{self.schedule!r}")
        if self.cycle_patience < 1:
            raise ConfigError(f"`cycle_patience` is 1 or more, not {self.cycle_patience}")
        if self.cycles is not None and self.cycles < 1:
            raise ConfigError(f"`cycles` is 1 or more, not {self.cycles}")
        if self.cycle_limit > 1 and self.schedule != "one-cycle":
            raise ConfigError("`cycles` chains one-cycle schedules; the until-converged "
                              "schedule decides its own length")
        if self.restart_epochs and not self.restarts:
            raise ConfigError("`restart_epochs` applies to `restarts`")
        if self.restarts:
            if self.scheme:
                raise ConfigError("`restarts` ranks runs on a labelled folder's validation "
                                  "images; it does not apply to `scheme`")
            if self.max_minutes:
                raise ConfigError("`restarts` stages runs by epoch: give `epochs`, not "
                                  "`max_minutes`")
            if self.val_split <= 0:
                raise ConfigError("`restarts` ranks runs by validation loss: `val_split` must "
                                  "be above 0")
        if self.unlabelled:
            if self.restarts or self.scheme or self.resume:
                raise ConfigError("`unlabelled` trains new models on a labelled folder; "
                                  "`restarts`, `scheme` and `resume` do not apply")
            if not get_decoder(family.decoder).ordered:
                raise ConfigError(f"the {self.model} family reads no strings to use as "
                                  "labels; self-train a string-reading family")
            if self.val_split <= 0:
                raise ConfigError("self-training stops on held-out labelled images: "
                                  "`val_split` must be above 0")
            if not 0.0 <= self.pseudo_threshold < 1.0:
                raise ConfigError(f"`pseudo_threshold` must be in [0, 1), got "
                                  f"{self.pseudo_threshold}")
        return self
