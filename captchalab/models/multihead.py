"""Fixed-length classifiers: one softmax per character position (seeds 001 and 004).

``multihead`` pools the feature map globally, as an image classifier does; it first widens
its view with strided convolutions until each pooled feature can see the whole captcha.
``multihead-spatial`` keeps the map's layout instead, so a feature knows *where* it fired;
seed 001 found that variant learns much faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from captchalab.models.backbone import DEFAULT_WIDTHS, Backbone, conv_bn_relu, strided_block
from captchalab.models.family import ClassifierHead, PositionalFamily
from captchalab.models.registry import register


@register("multihead")
class MultiHead(PositionalFamily):
    """Backbone -> wider context -> global average + max pooling -> ``length`` softmaxes."""

    def __init__(self, num_classes: int, height: int, width: int, length: int,
                 hidden: int = 256, dropout: float = 0.3,
                 widths: tuple[int, int, int, int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.length, self.num_classes = length, num_classes
        self.backbone = Backbone(tuple(widths))
        channels, rows, columns = self.backbone.output_shape(height, width)
        stages, context_channels = [], channels
        while columns > 2:  # halve the width until one feature sees the whole captcha
            stride = (2 if rows > 1 else 1, 2)
            stages.append(strided_block(context_channels, 2 * channels, stride))
            context_channels = 2 * channels
            rows, columns = -(-rows // stride[0]), -(-columns // 2)
        self.context = nn.Sequential(*stages)
        self.head = ClassifierHead(2 * context_channels, length * num_classes, hidden, dropout)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.context(self.backbone(images))
        return torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = self.head(self.features(images)).view(-1, self.length, self.num_classes)
        return F.log_softmax(scores, dim=-1)


@register("multihead-spatial")
class SpatialMultiHead(MultiHead):
    """Backbone -> 1x1 channel squeeze -> the whole map flattened (layout kept) -> softmaxes."""

    def __init__(self, num_classes: int, height: int, width: int, length: int,
                 hidden: int = 256, dropout: float = 0.3, squeeze: int = 32,
                 widths: tuple[int, int, int, int] = DEFAULT_WIDTHS) -> None:
        nn.Module.__init__(self)
        self.length, self.num_classes = length, num_classes
        self.backbone = Backbone(tuple(widths))
        _, rows, columns = self.backbone.output_shape(height, width)
        self.context = conv_bn_relu(self.backbone.out_channels, squeeze, kernel=1)
        self.head = ClassifierHead(squeeze * rows * columns, length * num_classes, hidden, dropout)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.context(self.backbone(images)).flatten(1)
