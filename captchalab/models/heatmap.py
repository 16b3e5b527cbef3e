"""Character-centre heatmaps (seed 002): a fully convolutional network with one map per symbol
at 1/4 of the input resolution, trained towards Gaussian spots at the characters' centres."""

from __future__ import annotations

import torch
from torch import nn

from captchalab.models.backbone import DEFAULT_WIDTHS, Backbone, conv_bn_relu
from captchalab.models.family import Family, FamilyOption, Targets
from captchalab.models.registry import register

SPOT_SIGMA = (1.3, 2.6)  # (x, y) widths of a centre's Gaussian spot, in output pixels (seed 002)
PRIOR = 0.01  # initial probability of a centre at any output pixel


def centre_maps(targets: Targets, num_classes: int, rows: int, columns: int,
                reduction: int = 4, sigma: tuple[float, float] = SPOT_SIGMA) -> torch.Tensor:
    """``(N, C, rows, columns)`` targets: a Gaussian spot peaking at exactly 1 in the output
    pixel holding each character's centre, in the map of its symbol (maximum where spots meet)."""
    assert targets.centres is not None
    n, length = targets.labels.shape
    device = targets.centres.device
    cells = torch.floor(targets.centres / reduction)  # (N, L, 2) output pixel of each centre
    cells[..., 0].clamp_(0, columns - 1)
    cells[..., 1].clamp_(0, rows - 1)
    xs = torch.arange(columns, device=device, dtype=torch.float32)
    ys = torch.arange(rows, device=device, dtype=torch.float32)
    spot_x = torch.exp(-((xs.view(1, 1, -1) - cells[..., :1]) ** 2) / (2 * sigma[0] ** 2))
    spot_y = torch.exp(-((ys.view(1, 1, -1) - cells[..., 1:]) ** 2) / (2 * sigma[1] ** 2))
    spots = spot_y.unsqueeze(-1) * spot_x.unsqueeze(-2)  # (N, L, rows, columns)
    valid = torch.arange(length, device=device).view(1, -1) < targets.lengths.view(-1, 1).to(device)
    spots = spots * valid.view(n, length, 1, 1)
    maps = torch.zeros(n, num_classes, rows, columns, device=device)
    index = targets.labels.to(device).view(n, length, 1, 1).expand_as(spots)
    return maps.scatter_reduce(1, index, spots, reduce="amax")


def focal_loss(probs: torch.Tensor, maps: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
               ) -> torch.Tensor:
    """Penalty-reduced focal loss on centre maps, normalised by the number of centres."""
    probs = probs.float().clamp(1e-4, 1 - 1e-4)
    centres = maps.eq(1.0).float()
    positive = -torch.log(probs) * (1 - probs) ** alpha * centres
    negative = -torch.log(1 - probs) * probs ** alpha * (1 - maps) ** beta * (1 - centres)
    return (positive.sum() + negative.sum()) / centres.sum().clamp(min=1.0)


@register("heatmap")
class CentreHeatmap(Family):
    """Full-height backbone -> 3x3 conv -> 1x1 conv: ``(N, C, H/4, W/4)`` centre probabilities.

    Map 0 (the blank's slot in the alphabet) is never a target and is ignored when decoding.
    """

    summary = "character-centre maps, any length; trains on centres"
    options = (FamilyOption(
        "centres", "character centres to train on (default: DATA/annotations.jsonl; derive "
        "them with 'captchalab annotate-centres')", "FILE", data=True),)
    decoder = "heatmap"
    class_outputs = ("head.1",)
    needs_centres = True

    def __init__(self, num_classes: int, height: int, width: int, hidden: int = 128,
                 widths: tuple[int, int, int, int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = Backbone(tuple(widths), full_height=True)
        self.head = nn.Sequential(conv_bn_relu(self.backbone.out_channels, hidden),
                                  nn.Conv2d(hidden, num_classes, 1))
        nn.init.constant_(self.head[-1].bias, float(torch.logit(torch.tensor(PRIOR))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.backbone(images)))

    def loss(self, probs: torch.Tensor, targets: Targets) -> torch.Tensor:
        rows, columns = probs.shape[2:]
        return focal_loss(probs, centre_maps(targets, self.num_classes, rows, columns,
                                             self.backbone.reduction[1]))
