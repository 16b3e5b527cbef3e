"""Seed 002's normalisation before recognition: straighten rotated text along its
least-squares midline and bring every text line to the same height.

Works on grey images with dark text on a light page (``Preprocessing`` inverts light-on-dark
images first when asked). Torch-free, so every runtime applies it the same way.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

MAX_ANGLE = 30.0  # degrees; a steeper fitted midline is taken as noise, not rotation
TEXT_FILL = 0.6  # share of the output height the text's height (4 sigma of its rows) fills
MIN_INK_PIXELS = 8  # fewer ink pixels than this: nothing to straighten, image kept as is


def otsu_threshold(pixels: np.ndarray) -> float:
    """The grey level that best separates ink from page (Otsu's between-class variance)."""
    histogram = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(histogram)
    mean = np.cumsum(histogram * levels)
    total_weight, total_mean = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight - mean * total_weight) ** 2 / (
            weight * (total_weight - weight))
    between = np.nan_to_num(between[:-1], nan=0.0, posinf=0.0)
    return float(np.argmax(between)) + 0.5


def ink_weights(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """How much ink each pixel holds (0 on the page, up to 1 on the darkest stroke), and the
    page's grey level (the median of the pixels lighter than the threshold)."""
    threshold = otsu_threshold(pixels)
    values = pixels.astype(np.float64)
    page = values[values > threshold]
    background = float(np.median(page)) if page.size else 255.0
    ink = np.clip((threshold - values) / max(threshold, 1.0), 0.0, 1.0)
    return ink, background


def midline(ink: np.ndarray) -> tuple[float, float]:
    """``(slope, intercept)`` of the least-squares line through each column's ink centre,
    each column weighted by its ink: the text's midline, ``row = slope * column + intercept``."""
    rows = np.arange(ink.shape[0], dtype=np.float64)
    mass = ink.sum(axis=0)
    columns = np.flatnonzero(mass > 0)
    if len(columns) < 2:
        return 0.0, float(ink.shape[0] / 2)
    centres = (ink[:, columns] * rows[:, None]).sum(axis=0) / mass[columns]
    slope, intercept = np.polyfit(columns.astype(np.float64), centres, 1,
                                  w=np.sqrt(mass[columns]))
    return float(slope), float(intercept)


def straighten(image: Image.Image) -> Image.Image:
    """The grey ``image`` turned so its text's midline is level, then cut to a band around
    the text whose height makes the text fill :data:`TEXT_FILL` of it (full width kept)."""
    pixels = np.asarray(image, dtype=np.uint8)
    ink, background = ink_weights(pixels)
    if np.count_nonzero(ink) < MIN_INK_PIXELS:
        return image
    slope, _ = midline(ink)
    angle = math.degrees(math.atan(slope))
    if abs(angle) > MAX_ANGLE:
        angle = 0.0
    fill = int(round(background))
    # PIL turns counter-clockwise for positive angles; rows grow downwards, so a midline
    # falling to the right (positive slope) is levelled by a positive angle
    level = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    ink, _ = ink_weights(np.asarray(level, dtype=np.uint8))
    profile = ink.sum(axis=1)
    if profile.sum() <= 0:
        return level
    rows = np.arange(len(profile), dtype=np.float64)
    centre = float((profile * rows).sum() / profile.sum())
    sigma = math.sqrt(float((profile * (rows - centre) ** 2).sum() / profile.sum()))
    band = max(4.0, 4.0 * sigma / TEXT_FILL)
    top, bottom = centre - band / 2, centre + band / 2
    # a band reaching past the image is padded with the page's grey, not clipped
    return level.transform((level.width, max(1, int(round(band)))), Image.Transform.EXTENT,
                           (0, top, level.width, bottom), resample=Image.Resampling.BILINEAR,
                           fillcolor=fill)
