"""The shared convolutional backbone: a grey image -> a feature map at 1/4 width.

Every family is a small head on this network, so features learned by one family (or by
pretraining on synthetic captchas) carry over to the others.
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_WIDTHS = (16, 32, 64, 128)  # channels of the four stages


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def strided_block(in_channels: int, out_channels: int, stride: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Backbone(nn.Module):
    """VGG-style CNN with batch norm: ``(N, 1, H, W) -> (N, C, H / 16, W / 4)``.

    Width is halved twice and height four times, so a 32 x 128 input gives a 2 x 32 map:
    32 positions along the text, each seeing a window wide enough for a glyph.

    With ``full_height`` the last two poolings are left out: a map at 1/4 of the input in
    both directions, for families that locate characters in 2-D (heatmaps).
    """

    def __init__(self, widths: tuple[int, int, int, int] = DEFAULT_WIDTHS,
                 full_height: bool = False) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.out_channels = w4
        self.reduction = (4, 4) if full_height else (16, 4)  # (height, width) downsampling
        tall_pool = nn.Identity if full_height else lambda: nn.MaxPool2d((2, 1))
        self.layers = nn.Sequential(
            conv_bn_relu(1, w1),
            nn.MaxPool2d(2),
            conv_bn_relu(w1, w2),
            nn.MaxPool2d(2),
            conv_bn_relu(w2, w3),
            conv_bn_relu(w3, w3),
            tall_pool(),
            conv_bn_relu(w3, w4),
            conv_bn_relu(w4, w4),
            tall_pool(),
        )

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(channels, height, width)`` of the feature map for an input of that size."""
        return self.out_channels, height // self.reduction[0], width // self.reduction[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)
