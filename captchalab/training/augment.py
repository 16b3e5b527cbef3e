"""Batch augmentation on normalised tensors: small affine warp, brightness/contrast, noise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random changes; each image gets its own draw."""

    rotation_degrees: float = 5.0
    shear: float = 0.15
    scale: tuple[float, float] = (0.9, 1.08)
    shift: tuple[float, float] = (0.04, 0.08)  # fraction of (width, height)
    contrast: tuple[float, float] = (0.6, 1.4)
    brightness: float = 0.4  # in normalised units
    noise: float = 0.15  # max std of Gaussian noise, in normalised units
    probability: float = 0.8

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 points: torch.Tensor | None = None) -> torch.Tensor:
        """Augmented images; with ``points`` ``(N, K, 2)`` (x, y pixels) they are moved along
        with the image, in place, so character centres stay on their characters."""
        n, _, height, width = images.shape

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, generator=generator) * (high - low) + low

        def chosen() -> torch.Tensor:
            return (torch.rand(n, generator=generator) < self.probability).float()

        angle = uniform(-self.rotation_degrees, self.rotation_degrees) * math.pi / 180 * chosen()
        shear = uniform(-self.shear, self.shear) * chosen()
        scale = 1 + (uniform(*self.scale) - 1) * chosen()
        aspect = width / height
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # rotation + shear in pixel space, expressed in normalised [-1, 1] coordinates
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos
        theta[:, 0, 1] = (-sin + shear * cos) / aspect
        theta[:, 1, 0] = sin * aspect
        theta[:, 1, 1] = cos + shear * sin
        theta[:, 0, 2] = uniform(-self.shift[0], self.shift[0]) * 2 * chosen()
        theta[:, 1, 2] = uniform(-self.shift[1], self.shift[1]) * 2 * chosen()
        if points is not None:
            move_points(points, theta, width, height)
        grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, padding_mode="border", align_corners=False)

        contrast = (1 + (uniform(*self.contrast) - 1) * chosen()).view(n, 1, 1, 1)
        brightness = (uniform(-self.brightness, self.brightness) * chosen()).view(n, 1, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * contrast.to(images) + mean + brightness.to(images)
        sigma = (uniform(0, self.noise) * chosen()).view(n, 1, 1, 1).to(images)
        noise = torch.randn(images.shape, generator=generator).to(images)
        return images + noise * sigma


def move_points(points: torch.Tensor, theta: torch.Tensor, width: int, height: int) -> None:
    """Map pixel points of the input through the inverse of ``affine_grid``'s ``theta``
    (which maps output coordinates to input ones), so they land where their pixels went."""
    scale = torch.tensor([2.0 / width, 2.0 / height])
    normalised = points * scale - 1.0  # (N, K, 2) in [-1, 1]
    inverse = torch.linalg.inv(theta[:, :, :2])  # (N, 2, 2)
    moved = (normalised - theta[:, None, :, 2]) @ inverse.transpose(1, 2)
    points.copy_((moved + 1.0) / scale)
