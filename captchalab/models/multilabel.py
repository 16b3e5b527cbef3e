"""Which characters are present (seed 000): one sigmoid per symbol, binary cross-entropy.

Each output position of the backbone scores how much it looks like every symbol; a symbol's
logit is its best score anywhere in the image (global max pooling of the evidence maps).
It cannot tell order or count; its decoder returns the set of symbols above a threshold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from captchalab.models.backbone import DEFAULT_WIDTHS, Backbone, conv_bn_relu
from captchalab.models.family import Family, Targets
from captchalab.models.registry import register


@register("multilabel")
class MultiLabel(Family):
    """Backbone -> per-position symbol evidence -> global max pooling -> a logit per symbol."""

    summary = "which characters are present, no order"
    decoder = "presence"
    class_outputs = ("evidence.2",)

    def __init__(self, num_classes: int, height: int, width: int, hidden: int = 128,
                 dropout: float = 0.2, widths: tuple[int, int, int, int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.backbone = Backbone(tuple(widths))
        self.evidence = nn.Sequential(conv_bn_relu(self.backbone.out_channels, hidden),
                                      nn.Dropout(dropout), nn.Conv2d(hidden, num_classes, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.evidence(self.backbone(images)).amax(dim=(2, 3))

    def loss(self, logits: torch.Tensor, targets: Targets) -> torch.Tensor:
        present = torch.zeros_like(logits, dtype=torch.float32)
        present.scatter_(1, targets.labels, 1.0)  # padding marks class 0, which is dropped
        return F.binary_cross_entropy_with_logits(logits[:, 1:].float(), present[:, 1:])
