"""What every model family shares: the training targets, the data facts a family is sized
from, and the base class whose defaults a family overrides."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from captchalab.models.backbone import DEFAULT_WIDTHS

LABEL_SMOOTHING = 0.1  # seeds 001 and 004: cross-entropy with label smoothing


@dataclass
class Targets:
    """A batch's labels as padded 1-based class indices, plus centres when a family needs them."""

    labels: torch.Tensor  # (N, L) long, 0 = padding
    lengths: torch.Tensor  # (N,) long
    centres: torch.Tensor | None = None  # (N, L, 2) float (x, y) in model-input pixels


@dataclass(frozen=True)
class DataShape:
    """What a family may need to know of the training data to size itself."""

    num_classes: int
    height: int
    width: int
    label_lengths: tuple[int, ...]  # distinct label lengths in the training split
    source_width: float  # median width of the original images, in pixels
    expressions: bool = False  # the labels are arithmetic questions (``7+3=?``)
    labelled_images: int = 0  # labelled training images (0: a synthetic stream)


@dataclass(frozen=True)
class FamilyOption:
    """A setting that one family takes (``slices`` for slice, ``centres`` for heatmap).

    The CLI offers every registered family's options as flags and refuses one given for a
    family that does not take it. ``data`` options steer how the training data is read
    (they are not constructor arguments of the network).
    """

    name: str
    help: str
    metavar: str = "VALUE"
    parse: Callable[[str], Any] = str
    data: bool = False
    inherited: bool = False  # kept from the model a run starts from (init) unless given


def scaled(size: int, multiplier: float) -> int:
    """A layer size times ``multiplier``, a multiple of 4 (and at least 4)."""
    return max(4, int(round(size * multiplier / 4)) * 4)


def parse_numbers(text: str) -> list[float]:
    """``"54,110,170"`` -> ``[54.0, 110.0, 170.0]``; a ``ValueError`` on anything else."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


class Family(nn.Module):
    """Base of every family: a network whose ``forward`` gives what ``decoder`` reads.

    A family subclass sets ``decoder`` (a name in :mod:`captchalab.runtime.decoders`),
    implements ``loss`` and, when it needs more than the input size and alphabet, overrides
    ``configure``. ``registry.register`` gives it its name; ``registry.build`` records the
    full constructor arguments in ``self.config`` for the model file.
    """

    family: str = ""
    summary: ClassVar[str] = ""  # what it reads and how, in a few words (help texts)
    options: ClassVar[tuple[FamilyOption, ...]] = ()
    decoder: str = "ctc"
    needs_centres: bool = False
    # the default schedule's length, in multiples of TARGET_STEPS (when epochs is not
    # given): a family that learns more slowly asks for more steps
    schedule_scale: float = 1.0
    # whether the default recipe adds captcha-shaped augmentation (measured per family)
    captcha_augmentation: ClassVar[bool] = False
    # layers whose output rows are laid out per class (repeated per position where the
    # family reads positions): fine-tuning on another alphabet remaps these rows by symbol
    class_outputs: tuple[str, ...] = ()
    # layers whose inputs are the feature map's rows flattened per channel (channel-major):
    # starting from a model of another input height resamples these along the rows
    row_inputs: tuple[str, ...] = ()
    # settings a run may change from those of the model it starts from: (option, source's
    # value, this run's value) -> the layer the change adds, which starts as no change (a
    # zero-initialised residual), so the run starts out reading as its source does
    additions: ClassVar[dict[tuple[str, Any, Any], str]] = {}
    config: dict

    @classmethod
    def network_options(cls, options: dict) -> dict:
        """The user's family options that shape the network (``data`` ones do not)."""
        names = {o.name for o in cls.options if not o.data}
        return {key: value for key, value in options.items() if key in names}

    @classmethod
    def configure(cls, shape: DataShape, width_multiplier: float = 1.0, **options) -> dict:
        """Constructor arguments for this data; ``options`` are the user's network options.
        ``width_multiplier`` scales the channels of the backbone and the head's hidden size
        (rounded to multiples of 4)."""
        config = {"num_classes": shape.num_classes, "height": shape.height,
                  "width": shape.width, **options}
        if width_multiplier != 1.0:
            config["widths"] = [scaled(w, width_multiplier) for w in DEFAULT_WIDTHS]
            hidden = inspect.signature(cls).parameters.get("hidden")
            if hidden is not None:
                config["hidden"] = scaled(hidden.default, width_multiplier)
        return config

    def loss(self, outputs: torch.Tensor, targets: Targets) -> torch.Tensor:
        raise NotImplementedError


def fixed_length(family: str, shape: DataShape) -> int:
    """The one label length a fixed-length family reads, or a clear error."""
    if len(shape.label_lengths) != 1:
        lengths = ", ".join(map(str, shape.label_lengths))
        raise ValueError(f"the {family} family reads a fixed number of characters, but the "
                         f"training labels have lengths {lengths}; use `model` crnn for "
                         "captchas of varying length")
    return shape.label_lengths[0]


class PositionalFamily(Family):
    """A family that reads a fixed number of characters: ``(N, L, C)`` log-probabilities,
    one softmax per position, trained with label-smoothed cross-entropy."""

    decoder = "positions"
    class_outputs = ("head.4",)  # the last layer of ClassifierHead

    @classmethod
    def configure(cls, shape: DataShape, **options) -> dict:
        return super().configure(shape, length=fixed_length(cls.family, shape), **options)

    def loss(self, log_probs: torch.Tensor, targets: Targets) -> torch.Tensor:
        return F.cross_entropy(log_probs.reshape(-1, log_probs.shape[-1]).float(),
                               targets.labels.reshape(-1), label_smoothing=LABEL_SMOOTHING)


class ClassifierHead(nn.Sequential):
    """Features -> hidden layer -> ``outputs`` scores, with dropout (the seeds' dense head)."""

    def __init__(self, features: int, outputs: int, hidden: int = 256, dropout: float = 0.3):
        super().__init__(nn.Dropout(dropout), nn.Linear(features, hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, outputs))
