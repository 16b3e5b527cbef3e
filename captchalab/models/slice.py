"""Slice-per-character (seed 003): cut the image into as many slices as the label length and
read each with one shared classifier.

Slices are equal by default; ``--slices 54,110,170,215,262`` gives the boundaries in pixels
of the original images (stored as fractions of the width, so any image size works).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from captchalab.models.backbone import DEFAULT_WIDTHS, Backbone
from captchalab.models.family import (
    ClassifierHead,
    DataShape,
    FamilyOption,
    PositionalFamily,
    parse_numbers,
)
from captchalab.models.registry import register


def slice_fractions(boundaries: list[float] | None, length: int, source_width: float
                    ) -> list[float]:
    """Inner boundaries as fractions of the width: equal slices, or the user's pixel values."""
    if not boundaries:
        return [i / length for i in range(1, length)]
    if len(boundaries) != length - 1:
        raise ValueError(f"`slices` needs {length - 1} boundaries for {length}-character "
                         f"labels, got {len(boundaries)}")
    if any(b <= a for a, b in zip([0.0, *boundaries], [*boundaries, source_width])):
        raise ValueError(f"`slices` must increase within the image width ({source_width:.0f} "
                         f"pixels), got {','.join(f'{b:g}' for b in boundaries)}")
    return [round(b / source_width, 5) for b in boundaries]


@register("slice")
class SliceClassifier(PositionalFamily):
    """Each slice is resized to one common width, then backbone -> flattened map -> softmax."""

    summary = "one shared classifier per slice of the image, fixed length"
    options = (FamilyOption(
        "slices", "boundaries in pixels of the original images (default: equal slices), "
        "e.g. 54,110,170,215,262", "X1,X2,...", parse_numbers),)

    def __init__(self, num_classes: int, height: int, width: int, length: int,
                 slices: list[float], hidden: int = 256, dropout: float = 0.3,
                 widths: tuple[int, int, int, int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.length, self.num_classes = length, num_classes
        edges = [0, *(round(f * width) for f in slices), width]
        self.spans = list(zip(edges[:-1], edges[1:]))
        widest = max(end - start for start, end in self.spans)
        self.slice_width = 4 * math.ceil(widest / 4)
        self.backbone = Backbone(tuple(widths))
        channels, rows, columns = self.backbone.output_shape(height, self.slice_width)
        self.head = ClassifierHead(channels * rows * columns, num_classes, hidden, dropout)

    @classmethod
    def configure(cls, shape: DataShape, slices: list[float] | None = None, **options) -> dict:
        config = super().configure(shape, **options)
        config["slices"] = slice_fractions(slices, config["length"], shape.source_width)
        return config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height = images.shape[2]
        pieces = [F.interpolate(images[:, :, :, start:end], size=(height, self.slice_width),
                                mode="bilinear", align_corners=False)
                  for start, end in self.spans]
        stacked = torch.stack(pieces, dim=1).flatten(0, 1)  # (N * L, 1, H, slice_width)
        scores = self.head(self.backbone(stacked).flatten(1))
        return F.log_softmax(scores.view(-1, self.length, self.num_classes), dim=-1)
