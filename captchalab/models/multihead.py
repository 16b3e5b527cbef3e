"""Fixed-length classifiers: one softmax per character position (seeds 001 and 004).

Both variants share one body: the backbone, then strided convolutions that halve the map's
width so that each feature sees further along the text. ``multihead`` goes on until two
columns are left and pools them globally, as an image classifier does. ``multihead-spatial``
stops while a column per character is left and flattens the map instead, so a feature knows
*where* it fired; seed 001 found that variant learns much faster.

Both learn more slowly than the sequence families (a position's softmax must work out which
glyph is its own), so their default schedule is twice as long, near seed 001's 7000 steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from captchalab.models.backbone import DEFAULT_WIDTHS, Backbone, strided_block
from captchalab.models.family import ClassifierHead, PositionalFamily
from captchalab.models.registry import register


def context_stages(channels: int, rows: int, columns: int,
                   min_columns: int) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """Strided convolutions that halve a ``(channels, rows, columns)`` map's width (and its
    height, down to one row) while the halved map keeps ``min_columns`` columns or more.

    Returns the stages and the ``(channels, rows, columns)`` of the map they give.
    """
    stages, in_channels, out_channels = [], channels, 2 * channels
    while -(-columns // 2) >= min_columns:
        stride = (2 if rows > 1 else 1, 2)
        stages.append(strided_block(in_channels, out_channels, stride))
        in_channels = out_channels
        rows, columns = -(-rows // stride[0]), -(-columns // 2)
    return nn.Sequential(*stages), (in_channels, rows, columns)


@register("multihead")
class MultiHead(PositionalFamily):
    """Backbone -> context down to two columns -> global average + max pooling ->
    ``length`` softmaxes."""

    summary = "one softmax per position after global pooling, fixed length"
    schedule_scale = 2.0

    def __init__(self, num_classes: int, height: int, width: int, length: int,
                 hidden: int = 256, dropout: float = 0.3,
                 widths: tuple[int, int, int, int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.length, self.num_classes = length, num_classes
        self.backbone = Backbone(tuple(widths))
        self.context, (channels, rows, columns) = context_stages(
            *self.backbone.output_shape(height, width), self.columns_kept(length))
        self.head = ClassifierHead(self.feature_count(channels, rows, columns),
                                   length * num_classes, hidden, dropout)

    @staticmethod
    def columns_kept(length: int) -> int:
        """The fewest columns the context stages leave: two, then global pooling."""
        return 2

    @staticmethod
    def feature_count(channels: int, rows: int, columns: int) -> int:
        return 2 * channels  # average and maximum of each channel

    def features(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.context(self.backbone(images))
        return torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = self.head(self.features(images)).view(-1, self.length, self.num_classes)
        return F.log_softmax(scores, dim=-1)


@register("multihead-spatial")
class SpatialMultiHead(MultiHead):
    """Backbone -> context while a column per character is left -> the whole map flattened
    (layout kept) -> ``length`` softmaxes."""

    summary = "one softmax per position over the flattened map, fixed length"

    @staticmethod
    def columns_kept(length: int) -> int:
        return length

    @staticmethod
    def feature_count(channels: int, rows: int, columns: int) -> int:
        return channels * rows * columns

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.context(self.backbone(images)).flatten(1)
