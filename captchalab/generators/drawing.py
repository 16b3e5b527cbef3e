"""Drawing a scheme without a ``[rings]`` table: background, characters, warp, noise, blur.

Speed matters (a thousand images a second on two cores): character bitmaps and their edge
pixels are cached per (font, size, character); each character is drawn with one Pillow mesh
transform that rotates, shears and warps it at once, and its box comes from its edge pixels
moved the same way; noise is drawn by Pillow or stamped with numpy. Randomness comes from one
``random.Random`` (and a numpy generator seeded from it), so the same generator state always
gives the same image.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from captchalab.generators.fonts import load_font
from captchalab.runtime.arithmetic import answer

if TYPE_CHECKING:
    from captchalab.generators.scheme import (
        Background,
        Ellipses,
        Glyphs,
        Noise,
        Palette,
        Scheme,
        Warp,
    )

Box = tuple[int, int, int, int]
RGB = tuple[int, int, int]
Ink = int | tuple[int, int, int]
PAD = 2  # blank pixels around each cached character bitmap


@dataclass(frozen=True)
class Rendered:
    """A generated captcha: image, label, and each character's centre and box (pixels)."""

    image: Image.Image
    label: str
    centres: list[tuple[float, float]]
    boxes: list[tuple[int, int, int, int]]


def ink(colour: RGB, mode: str) -> Ink:
    """``colour`` for an image of ``mode``: itself for RGB, its luma (as Pillow computes it)
    for L."""
    if mode == "L":
        red, green, blue = colour
        return (red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16
    return colour


def _luma(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.uint32) @ np.array([19595, 38470, 7471], np.uint32) + 0x8000)
            >> 16).astype(np.uint8)


def pick_many(palette: Palette, count: int, generator: np.random.Generator,
              glyph_colours: Sequence[RGB]) -> np.ndarray:
    """``count`` colours (``count`` x 3, uint8) of ``palette``, vectorised."""
    if palette.glyphs or palette.choices:
        table = np.array(glyph_colours if palette.glyphs else palette.choices,
                         np.uint8).reshape(-1, 3)
        if not len(table):
            table = np.zeros((1, 3), np.uint8)
        return table[generator.integers(0, len(table), count)]
    low, high = np.array(palette.low), np.array(palette.high)
    if palette.shades:
        return np.repeat(generator.integers(low[0], high[0] + 1, (count, 1)), 3, 1).astype(np.uint8)
    return generator.integers(low, high + 1, (count, 3)).astype(np.uint8)


@dataclass(frozen=True)
class Glyph:
    """A character's coverage (mode L, cropped to its ink), the centres of its edge pixels
    relative to the bitmap's centre, and how far the ink's middle lies below the middle of the
    font's line (so that characters keep a common baseline)."""

    mask: Image.Image
    edge: np.ndarray
    lift: float


@lru_cache(maxsize=8192)
def glyph(font: str, size: int, char: str) -> Glyph:
    """``char`` in ``font`` at ``size`` px, drawn once per process."""
    face = load_font(font, size)
    ascent, descent = face.getmetrics()
    left, top, right, bottom = face.getbbox(char)
    mask = Image.new("L", (max(1, right - left) + 2 * PAD, max(1, bottom - top) + 2 * PAD), 0)
    ImageDraw.Draw(mask).text((PAD - left, PAD - top), char, font=face, fill=255)
    inked = np.asarray(mask) > 0
    inner = inked.copy()  # inked pixels whose four neighbours are inked too
    inner[1:-1, 1:-1] &= inked[:-2, 1:-1] & inked[2:, 1:-1] & inked[1:-1, :-2] & inked[1:-1, 2:]
    ys, xs = np.nonzero(inked & ~inner)
    edge = np.stack([xs + 0.5 - mask.width / 2, ys + 0.5 - mask.height / 2], 1)
    if not len(edge):  # a character without ink: its box is its centre
        edge = np.zeros((1, 2))
    return Glyph(mask, edge, (top + bottom) / 2 - (ascent + descent) / 2)


def shape(degrees: float, shear: float) -> np.ndarray:
    """Shear (x += shear * y), then rotation by ``degrees``: a 2 x 2 matrix of determinant 1."""
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[cos, cos * shear - sin], [sin, sin * shear + cos]])


@lru_cache(maxsize=1024)
def _gradient(width: int, height: int, degrees: int) -> Image.Image:
    """0 to 255 across the canvas along ``degrees`` (mode L), the share of the second colour."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    angle = math.radians(degrees)
    along = xs * math.cos(angle) + ys * math.sin(angle)
    along -= along.min()
    along *= 255 / (float(along.max()) or 1.0)
    return Image.fromarray((along + 0.5).astype(np.uint8))


def draw_background(background: Background, size: tuple[int, int], mode: str,
                    rng: random.Random, generator: np.random.Generator) -> Image.Image:
    """A fresh canvas: solid, gradient or noise texture."""
    colour = ink(background.colors.pick(rng), mode)
    if background.kind == "solid":
        return Image.new(mode, size, colour)
    width, height = size
    if background.kind == "gradient":
        second = ink(background.colors.pick(rng), mode)
        share = _gradient(width, height, round(rng.uniform(*background.angle)) % 360)
        return Image.composite(Image.new(mode, size, second), Image.new(mode, size, colour),
                               share)
    grain = background.grain
    texture = generator.normal(0.0, background.texture,
                               (-(-height // grain), -(-width // grain))).astype(np.float32)
    if grain > 1:
        texture = np.asarray(Image.fromarray(texture).resize((width, height),
                                                             Image.Resampling.BILINEAR))
    first = np.asarray(colour, np.float32)
    pixels = np.multiply.outer(texture, np.ones_like(first)) + first
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


class Mesh:
    """A displacement field: output point p shows input point p + d(p); d is bilinear between
    vertices at ``xs`` x ``ys`` (ints, covering the canvas)."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> None:
        self.xs, self.ys = xs, ys
        self.field = np.stack([dx, dy], -1)
        self.vertical = len(ys) == 2 and not dx.any() and (dy[0] == dy[1]).all()
        self._lists = (xs.tolist(), ys.tolist(), dx.tolist(), dy.tolist())

    def shifts(self, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """d at a few points: plain Python for a vertical shift (quicker than numpy there)."""
        if not self.vertical:
            return [tuple(d) for d in self.displacement(np.array(points, float)).tolist()]
        xs, dy = self._lists[0], self._lists[3][0]
        found = []
        for x, _ in points:
            j = min(max(bisect_right(xs, x) - 1, 0), len(xs) - 2)
            t = min(max((x - xs[j]) / (xs[j + 1] - xs[j]), 0.0), 1.0)
            found.append((0.0, dy[j] + (dy[j + 1] - dy[j]) * t))
        return found

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """d at ``points`` (N x 2); points off the canvas take the value at its border."""
        xs, ys = self.xs, self.ys
        x = np.clip(points[:, 0], xs[0], xs[-1])
        y = np.clip(points[:, 1], ys[0], ys[-1])
        j = np.clip(np.searchsorted(xs, x, "right") - 1, 0, len(xs) - 2)
        i = np.clip(np.searchsorted(ys, y, "right") - 1, 0, len(ys) - 2)
        tx = ((x - xs[j]) / (xs[j + 1] - xs[j]))[:, None]
        ty = ((y - ys[i]) / (ys[i + 1] - ys[i]))[:, None]
        f = self.field
        return ((f[i, j] * (1 - tx) + f[i, j + 1] * tx) * (1 - ty)
                + (f[i + 1, j] * (1 - tx) + f[i + 1, j + 1] * tx) * ty)

    def forward(self, points: np.ndarray) -> np.ndarray:
        """Where input ``points`` end up in the output: p with p + d(p) = q. Exact for a
        vertical shift that depends on x alone; else by iteration (the error shrinks by the
        slope of d, well below 1, each time)."""
        if self.vertical:
            shift = np.interp(points[:, 0], self.xs, self.field[0, :, 1])
            return points - np.stack([np.zeros(len(points)), shift], 1)
        moved = points
        for _ in range(3):
            moved = points - self.displacement(moved)
        return moved

    def lines(self, low: int, high: int, axis: int) -> list[int]:
        """``low``, the vertex lines strictly between, and ``high`` along ``axis``."""
        return [low, *(v for v in self._lists[axis] if low < v < high), high]


def _vertices(length: int, step: float) -> np.ndarray:
    return np.linspace(0, length, math.ceil(length / step) + 1).round().astype(int)


def make_mesh(warp: Warp, size: tuple[int, int], rng: random.Random,
              generator: np.random.Generator) -> Mesh:
    """This image's sine and elastic displacement (one row of cells for a sine alone)."""
    width, height = size
    amplitude, period = rng.uniform(*warp.sine.amplitude), rng.uniform(*warp.sine.period)
    phase, strength = rng.uniform(0, 2 * math.pi), rng.uniform(*warp.elastic.strength)
    steps = [period / 6] if amplitude else []  # a sine of 6 straight pieces is close enough
    steps += [warp.elastic.scale] if strength else []
    xs = _vertices(width, max(4.0, min(steps)))
    ys = _vertices(height, warp.elastic.scale) if strength else np.array([0, height])
    wave = amplitude * np.sin(xs * (2 * math.pi / period) + phase)
    dx, dy = np.zeros((len(ys), len(xs))), np.repeat(wave[None], len(ys), 0)
    if strength:
        dx += generator.uniform(-strength, strength, dx.shape)
        dy += generator.uniform(-strength, strength, dx.shape)
    return Mesh(xs, ys, dx, dy)


def sprite(mask: Image.Image, matrix: np.ndarray, centre: tuple[float, float],
           mesh: Mesh | None, region: Box) -> Image.Image:
    """The part ``region`` of the canvas of ``mask`` shaped by ``matrix``, its centre put at
    ``centre``, then warped by ``mesh``: one Pillow mesh transform, a cell per mesh cell (the
    vertices are few, so plain Python is quicker than numpy here)."""
    x0, y0, x1, y1 = region
    xs = mesh.lines(x0, x1, 0) if mesh else [x0, x1]
    ys = mesh.lines(y0, y1, 1) if mesh else [y0, y1]
    (a, b), (c, d) = matrix.tolist()  # determinant 1: the inverse is [[d, -b], [-c, a]]
    half_w, half_h = mask.width / 2, mask.height / 2
    points = [(x, y) for y in ys for x in xs]
    shifts = mesh.shifts(points) if mesh else [(0.0, 0.0)] * len(points)
    flat = []
    for (x, y), (dx, dy) in zip(points, shifts):
        u, v = x + dx - centre[0], y + dy - centre[1]
        flat.append((d * u - b * v + half_w, -c * u + a * v + half_h))
    source = [flat[k:k + len(xs)] for k in range(0, len(flat), len(xs))]
    cells = []
    for i in range(len(ys) - 1):
        for j in range(len(xs) - 1):
            (nw, ne), (sw, se) = source[i][j:j + 2], source[i + 1][j:j + 2]
            cells.append(((xs[j] - x0, ys[i] - y0, xs[j + 1] - x0, ys[i + 1] - y0),
                          (*nw, *sw, *se, *ne)))
    return mask.transform((x1 - x0, y1 - y0), Image.Transform.MESH, cells,
                          Image.Resampling.BILINEAR)


def place_glyphs(image: Image.Image, label: str, glyphs: Glyphs, rng: random.Random,
                 mesh: Mesh | None = None) -> tuple[list[RGB], list[Box]]:
    """Draw ``label`` left to right, each character rotated, sheared and warped by ``mesh``;
    each character's colour and ink box (clipped to the canvas)."""
    width, height = image.size
    image_font, image_colour = rng.choice(glyphs.fonts), glyphs.colors.pick(rng)
    parts, colours = [], []
    for char in label:
        font = rng.choice(glyphs.fonts) if glyphs.font_per == "character" else image_font
        drawn = glyph(font, rng.randint(*glyphs.size), char)
        matrix = shape(rng.uniform(-glyphs.rotation, glyphs.rotation),
                       rng.uniform(-glyphs.shear, glyphs.shear))
        edge = drawn.edge @ matrix.T  # around the glyph's centre
        parts.append((drawn, matrix, edge, edge.min(0).tolist(), edge.max(0).tolist()))
        colours.append(glyphs.colors.pick(rng) if glyphs.color_per == "character"
                       else image_colour)
    widths = [high[0] - low[0] for *_, low, high in parts]
    gaps = [rng.uniform(*glyphs.spacing) - rng.uniform(*glyphs.overlap) * min(a, b)
            for a, b in zip(widths, widths[1:])]
    room = width - 2 * glyphs.margin
    total = sum(widths) + sum(gaps)
    if total > room and gaps:  # squeeze the characters together until the text fits
        gaps = [gap - (total - room) / len(gaps) for gap in gaps]
        total = room
    x = glyphs.margin + rng.uniform(0, max(0.0, room - total))
    centres = []
    for i, (drawn, _, _, low, high) in enumerate(parts):
        if i:
            x += widths[i - 1] + gaps[i - 1]
        middle = height / 2 + drawn.lift + rng.uniform(-glyphs.jitter, glyphs.jitter)
        if high[1] - low[1] <= height:  # keep the ink inside the canvas
            middle = min(max(middle, -low[1]), height - high[1])
        centres.append((x - low[0], middle))
    boxes = _ink_boxes([edge for _, _, edge, _, _ in parts], centres, mesh)
    for (drawn, matrix, *_), centre, colour, (left, top, right, bottom) in zip(
            parts, centres, colours, boxes):
        region = (max(0, left - 1), max(0, top - 1), min(width, right + 1),
                  min(height, bottom + 1))
        if region[0] < region[2] and region[1] < region[3]:
            image.paste(ink(colour, image.mode), region[:2],
                        sprite(drawn.mask, matrix, centre, mesh, region))
    return colours, [(min(max(x0, 0), width), min(max(y0, 0), height),
                      min(max(x1, 0), width), min(max(y1, 0), height))
                     for x0, y0, x1, y1 in boxes]


def _ink_boxes(edges: list[np.ndarray], centres: list[tuple[float, float]],
               mesh: Mesh | None) -> list[Box]:
    """Pixel boxes around each glyph's edge pixels, placed at its centre and warped."""
    if not edges:
        return []
    points = np.concatenate([edge + centre for edge, centre in zip(edges, centres)])
    if mesh:
        points = mesh.forward(points)
    starts = np.cumsum([0] + [len(edge) for edge in edges[:-1]])
    low = np.floor(np.minimum.reduceat(points, starts) - 0.5).astype(int)
    high = np.floor(np.maximum.reduceat(points, starts) + 0.5).astype(int) + 1
    return [(a, b, c, d) for (a, b), (c, d) in zip(low.tolist(), high.tolist())]


def box_centres(boxes: Sequence[Box]) -> list[tuple[float, float]]:
    return [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes]


def draw_noise(image: Image.Image, noise: Noise, rng: random.Random,
               generator: np.random.Generator, glyph_colours: Sequence[RGB],
               boxes: Sequence[Box]) -> Image.Image:
    """Ellipses, arcs, lines, the strike-through curve, then dots."""
    width, height = image.size
    draw = ImageDraw.Draw(image)

    def colour(palette: Palette) -> Ink:
        return ink(palette.pick(rng, glyph_colours), image.mode)

    def shape_box(spec: Ellipses) -> tuple[float, float, float, float]:
        w, h = rng.uniform(*spec.width), rng.uniform(*spec.height)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        return (x - w / 2, y - h / 2, x + w / 2, y + h / 2)

    for _ in range(rng.randint(*noise.ellipses.count)):
        spec = noise.ellipses
        draw.ellipse(shape_box(spec), outline=colour(spec.colors),
                     width=rng.randint(*spec.thickness))
    for _ in range(rng.randint(*noise.arcs.count)):
        spec, start = noise.arcs, rng.uniform(0, 360)
        draw.arc(shape_box(spec), start, start + rng.uniform(*spec.extent),
                 fill=colour(spec.colors), width=rng.randint(*spec.thickness))
    for _ in range(rng.randint(*noise.lines.count)):
        spec = noise.lines
        half, angle = rng.uniform(*spec.length) / 2, rng.uniform(0, math.pi)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        dx, dy = half * math.cos(angle), half * math.sin(angle)
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=colour(spec.colors),
                  width=rng.randint(*spec.thickness))
    for _ in range(rng.randint(*noise.strike.count) if boxes else 0):
        spec = noise.strike
        xs = np.arange(min(b[0] for b in boxes) - 4, max(b[2] for b in boxes) + 5, 3.0)
        middle = sum((b[1] + b[3]) / 2 for b in boxes) / len(boxes) + rng.uniform(*spec.offset)
        amplitude, period = rng.uniform(*spec.amplitude), rng.uniform(*spec.period)
        ys = middle + amplitude * np.sin(2 * math.pi * xs / period + rng.uniform(0, 2 * math.pi))
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colour(spec.colors),
                  width=rng.randint(*spec.thickness), joint="curve")
    count = rng.randint(*noise.dots.count)
    return _dots(image, count, noise, generator, glyph_colours) if count else image


@lru_cache(maxsize=32)
def _disc(radius: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    inside = xs * xs + ys * ys <= radius * radius + radius
    return ys[inside], xs[inside]


def _dots(image: Image.Image, count: int, noise: Noise, generator: np.random.Generator,
          glyph_colours: Sequence[RGB]) -> Image.Image:
    """``count`` filled discs of random radius and colour, stamped with numpy (offsets off the
    canvas are clamped onto its edge, which the disc covers anyway)."""
    width, height = image.size
    pixels = np.array(image)
    xs, ys = generator.integers(0, (width, height), (count, 2)).T
    colours = pick_many(noise.dots.colors, count, generator, glyph_colours)
    if image.mode == "L":
        colours = _luma(colours)
    low, high = noise.dots.radius
    radii = generator.integers(low, high + 1, count) if high > low else None
    for radius in range(low, high + 1):
        chosen = slice(None) if radii is None else radii == radius
        dy, dx = _disc(radius)
        rows = np.clip(ys[chosen, None] + dy, 0, height - 1)
        cols = np.clip(xs[chosen, None] + dx, 0, width - 1)
        pixels[rows, cols] = colours[chosen][:, None]
    return Image.fromarray(pixels, image.mode)


def draw_text(scheme: Scheme, rng: random.Random) -> str:
    """What the captcha says: random symbols, or an arithmetic question with a whole-number
    answer (``12×4=?``: a division is exact, a difference never negative)."""
    if scheme.text.kind == "symbols":
        return "".join(rng.choice(scheme.alphabet)
                       for _ in range(rng.randint(*scheme.length)))
    text = scheme.text
    low, high = text.operands
    while True:  # a three-term question may come out negative: draw it again
        numbers = [rng.randint(low, high)]
        operators: list[str] = []
        for _ in range(rng.randint(*text.terms) - 1):
            operator = rng.choice(text.operators)
            value = rng.randint(low, high)
            if operator in "÷/":  # the number before becomes a multiple of the divisor
                value = max(value, 1)
                numbers[-1] = value * rng.randint(max(1, low // value), max(1, high // value))
            elif operator == "-" and value > numbers[-1] and not operators:
                numbers[-1], value = value, numbers[-1]
            numbers.append(value)
            operators.append(operator)
        body = str(numbers[0]) + "".join(o + str(n) for o, n in zip(operators, numbers[1:]))
        if answer(body) >= 0:
            break
    question = rng.choice(["=?", "="]) if text.question == "either" else (
        "" if text.question == "none" else text.question)
    return body + question


def render_glyphs(scheme: Scheme, rng: random.Random) -> Rendered:
    """One captcha of a scheme without a ``[rings]`` table."""
    label = draw_text(scheme, rng)
    generator = np.random.default_rng(rng.getrandbits(64))
    mesh = make_mesh(scheme.warp, scheme.size, rng, generator) if scheme.warp.active else None
    image = draw_background(scheme.background, scheme.size, scheme.mode, rng, generator)
    colours, boxes = place_glyphs(image, label, scheme.glyphs, rng, mesh)
    image = draw_noise(image, scheme.noise, rng, generator, colours, boxes)
    radius = rng.uniform(*scheme.blur)
    if radius > 0:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    return Rendered(image, label, box_centres(boxes), boxes)
