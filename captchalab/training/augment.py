"""Batch augmentation on normalised tensors: a small affine warp, brightness/contrast and
noise, and optionally what captchas themselves do to glyphs: an elastic warp, blur, and
occluding lines, dots and patches (each off when its setting is 0)."""

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
    elastic: float = 0.0  # largest displacement of a smooth random warp, in pixels
    blur: float = 0.0  # largest Gaussian blur sigma, in pixels
    lines: float = 0.0  # share of images that get a random occluding line
    dots: float = 0.0  # share of images that get a sprinkle of dots
    erase: float = 0.0  # share of images that get a small patch erased

    @classmethod
    def captcha(cls, strength: float = 1.0) -> Augmentation:
        """The affine and photometric changes plus mild captcha-shaped ones: a first,
        stronger setting (elastic 1.5 px, blur 1.0, lines, dots and patches on 30% of the
        images, lines up to 3 px) left small images such as sysu's unreadable and the models
        unable to fit them (BENCHMARKS.md)."""
        return cls(elastic=1.0 * strength, blur=0.7 * strength, lines=min(0.5, 0.2 * strength),
                   dots=min(0.5, 0.2 * strength), erase=0.0)

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 points: torch.Tensor | None = None) -> torch.Tensor:
        """Augmented images; with ``points`` ``(N, K, 2)`` (x, y pixels) they are moved along
        with the image, in place, so character centres stay on their characters. The images
        may be on any device; the random draws come from ``generator`` (a CPU one), so a
        GPU run augments as a CPU run with the same seed does."""
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
        if self.elastic:
            grid = grid + self._elastic(n, height, width, generator).to(grid)
        images = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
        if self.blur:
            images = self._blur(images, uniform(0, self.blur) * chosen())

        contrast = (1 + (uniform(*self.contrast) - 1) * chosen()).view(n, 1, 1, 1)
        brightness = (uniform(-self.brightness, self.brightness) * chosen()).view(n, 1, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * contrast.to(images) + mean + brightness.to(images)
        sigma = (uniform(0, self.noise) * chosen()).view(n, 1, 1, 1).to(images)
        noise = torch.randn(images.shape, generator=generator).to(images)
        images = images + noise * sigma
        if self.lines or self.dots or self.erase:
            images = self._occlude(images, generator)
        return images

    def _elastic(self, n: int, height: int, width: int, generator: torch.Generator
                 ) -> torch.Tensor:
        """A smooth random displacement ``(N, H, W, 2)`` in grid units: random offsets on a
        coarse grid (a knot every 8 pixels), upsampled."""
        knots = (max(2, height // 8), max(2, width // 8))
        coarse = (torch.rand(n, 2, *knots, generator=generator) * 2 - 1) * self.elastic
        field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
        scale = torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)
        return (field * scale).permute(0, 2, 3, 1)

    @staticmethod
    def _blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        """Each image blurred by a separable Gaussian of its own sigma (0: unchanged)."""
        offsets = torch.arange(-2, 3, dtype=torch.float32)
        kernels = torch.exp(-offsets[None] ** 2 / (2 * sigmas.clamp(min=1e-3)[:, None] ** 2))
        kernels = torch.where(sigmas[:, None] > 0.05, kernels, (offsets == 0).float()[None])
        kernels = (kernels / kernels.sum(dim=1, keepdim=True)).to(images)
        n, _, height, width = images.shape
        grouped = images.reshape(1, n, height, width)
        grouped = F.conv2d(F.pad(grouped, (2, 2, 0, 0), mode="replicate"),
                           kernels.view(n, 1, 1, 5), groups=n)
        grouped = F.conv2d(F.pad(grouped, (0, 0, 2, 2), mode="replicate"),
                           kernels.view(n, 1, 5, 1), groups=n)
        return grouped.reshape(n, 1, height, width)

    def _occlude(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Thin lines across the text, a sprinkle of dots, or a small erased patch, drawn in
        the image's darkest or lightest value, as captcha noise is."""
        n, _, height, width = images.shape
        darkest = (torch.rand(n, generator=generator) < 0.7).to(images.device)
        ink = torch.where(darkest, images.amin(dim=(1, 2, 3)), images.amax(dim=(1, 2, 3)))
        ys = torch.arange(height, dtype=torch.float32).view(1, height, 1)
        xs = torch.arange(width, dtype=torch.float32).view(1, 1, width)
        masks = torch.zeros(n, height, width, dtype=torch.bool)

        def draw(share: float) -> torch.Tensor:
            return torch.rand(n, generator=generator) < share

        if self.lines:  # a straight thin line (about one pixel) across the whole width
            y0, y1 = (torch.rand(2, n, 1, 1, generator=generator) * height)
            thickness = 0.4 + 0.3 * torch.rand(n, 1, 1, generator=generator)
            line = (ys - (y0 + (y1 - y0) * xs / width)).abs() < thickness
            masks |= line & draw(self.lines).view(n, 1, 1)
        if self.dots:  # about one pixel in 60
            sprinkle = torch.rand(n, height, width, generator=generator) < 1 / 60
            masks |= sprinkle & draw(self.dots).view(n, 1, 1)
        if self.erase:  # a patch up to a sixth of the height and a tenth of the width
            cy = torch.rand(n, 1, 1, generator=generator) * height
            cx = torch.rand(n, 1, 1, generator=generator) * width
            patch = ((ys - cy).abs() < height / 12) & ((xs - cx).abs() < width / 20)
            masks |= patch & draw(self.erase).view(n, 1, 1)
        masks = masks.unsqueeze(1).to(images.device)
        return torch.where(masks, ink.view(n, 1, 1, 1).to(images), images)


def move_points(points: torch.Tensor, theta: torch.Tensor, width: int, height: int) -> None:
    """Map pixel points of the input through the inverse of ``affine_grid``'s ``theta``
    (which maps output coordinates to input ones), so they land where their pixels went."""
    scale = torch.tensor([2.0 / width, 2.0 / height])
    normalised = points * scale - 1.0  # (N, K, 2) in [-1, 1]
    inverse = torch.linalg.inv(theta[:, :, :2])  # (N, 2, 2)
    moved = (normalised - theta[:, None, :, 2]) @ inverse.transpose(1, 2)
    points.copy_((moved + 1.0) / scale)
