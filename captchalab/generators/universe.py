"""The synthetic universe: every image a freshly drawn scheme, for the general base model.

:func:`sample_scheme` draws a whole :class:`~captchalab.generators.scheme.Scheme` at random
over the generator's parameter space: canvas size and aspect, every usable TrueType font on
the machine, solid, gradient and textured pages in colour or grey (sometimes light text on
dark, sometimes a vivid colour per character), rotation, shear, overlap, sine and elastic
warps, blur, every noise kind (a rain of short dark dashes among them), 3 to 8 symbols of
digits and ASCII letters in both cases, or an arithmetic question. The
:data:`UNIVERSE` stands where a scheme does (``generate universe``, ``train --scheme
universe``): each image it draws comes from its own scheme, so a model never sees one style
for long.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import random
import string
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from captchalab.generators.drawing import Rendered, render_glyphs
from captchalab.generators.fonts import load_font, search_folders
from captchalab.generators.scheme import (
    Arcs,
    Background,
    Canvas,
    Dots,
    Elastic,
    Ellipses,
    Glyphs,
    Lines,
    Noise,
    Palette,
    Scheme,
    Sine,
    Strike,
    Text,
    Warp,
)

UNIVERSE_VERSION = 2  # bump when the same seed and index start to give different images
OPERATORS = "+-×÷"
SYMBOLS = string.digits + string.ascii_lowercase + string.ascii_uppercase + OPERATORS + "=?"
# fonts whose letters are not letters (symbols, maths, dingbats), or that show one glyph for
# everything: never drawn
_NOT_TEXT = ("cmex", "cmsy", "cmmi", "STIXNonUni", "STIXSiz", "LastResort", "Display",
             "D050000L", "StandardSymbols", "MathTeX", "Symbol", "Dingbat")
# symbol sets a scheme draws from, with their weights: sites mostly use digits and lower case
_SETS = ((string.digits, 3), (string.ascii_lowercase, 2), (string.ascii_uppercase, 1),
         (string.digits + string.ascii_lowercase, 4), (string.digits + string.ascii_uppercase, 2),
         (string.ascii_letters, 1), (string.digits + string.ascii_letters, 3))
ARITHMETIC_SHARE = 0.1  # of images that are arithmetic questions (when the symbols allow)
INVERTED_SHARE = 0.12  # of images with light text on a dark page
VIVID_SHARE = 0.3  # of dark-on-light images whose characters each take a vivid colour


@lru_cache(maxsize=1)
def universe_fonts() -> tuple[str, ...]:
    """Every TrueType/OpenType font found (matplotlib's and the system's) that draws each
    symbol of :data:`SYMBOLS` with a glyph of its own; one file per name."""
    found: dict[str, str] = {}
    for folder in search_folders():
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in (".ttf", ".otf") or path.name in found:
                continue
            if any(mark.lower() in path.name.lower() for mark in _NOT_TEXT):
                continue
            if _draws_every_symbol(str(path)):
                found[path.name] = str(path)
    return tuple(found[name] for name in sorted(found))


def _draws_every_symbol(path: str) -> bool:
    """Whether the font has a real glyph (inked, unlike its missing-glyph box) per symbol."""
    try:
        face = load_font(path, 24)
        missing = _bitmap(face, "\U0010fffd")
        for char in SYMBOLS:
            drawn = _bitmap(face, char)
            if not any(drawn[1]) or drawn == missing:
                return False
    except OSError:
        return False
    return True


def _bitmap(face, char: str) -> tuple[tuple[int, int], bytes]:
    """The size and pixels of ``char`` drawn in ``face``."""
    mask = face.getmask(char)
    return mask.size, bytes(mask)


def _light(rng: random.Random) -> tuple[Palette, int]:
    """A light page palette and its mean grey level."""
    low = rng.randint(170, 245)
    high = min(255, low + rng.randint(0, 40))
    if rng.random() < 0.5:
        return Palette(low=(low,) * 3, high=(high,) * 3, shades=True), (low + high) // 2
    tint = [rng.randint(-25, 10) for _ in range(3)]
    lo = tuple(max(0, min(255, low + t)) for t in tint)
    hi = tuple(max(a, min(255, high + t)) for a, t in zip(lo, tint))
    return Palette(low=lo, high=hi), (sum(lo) + sum(hi)) // 6  # type: ignore[arg-type]


def _vivid(rng: random.Random) -> Palette:
    """A few saturated colours of any hue, dark to pale (a pale one barely stands out from
    a white page), one per character as many sites draw them."""
    colours = []
    for _ in range(rng.randint(4, 12)):
        value = rng.uniform(0.3, 1.0)
        saturation = rng.uniform(0.15, 0.5) if rng.random() < 0.25 else rng.uniform(0.4, 1.0)
        red, green, blue = colorsys.hsv_to_rgb(rng.random(), saturation, value)
        colours.append((round(255 * red), round(255 * green), round(255 * blue)))
    return Palette(choices=tuple(colours))


def _ink(rng: random.Random, page: int, light_text: bool) -> Palette:
    """Text colours that stand out from a page of grey level ``page``."""
    if light_text:
        low = min(255, max(page + 90, rng.randint(170, 235)))
        return Palette(low=(low,) * 3, high=(255,) * 3)
    high = max(0, min(page - 90, rng.randint(40, 150)))
    if rng.random() < 0.3:  # bright colours of any hue, some pale (as many sites draw)
        return Palette(low=(0, 0, 0), high=(min(255, page), rng.randint(120, 220),
                                            min(255, page)))
    if rng.random() < 0.5:
        return Palette(low=(0,) * 3, high=(high,) * 3, shades=True)
    return Palette(low=(0, 0, 0), high=(high, high, high))


def _maybe(rng: random.Random, share: float, low: int, high: int) -> tuple[int, int]:
    """A count span: ``(0, 0)`` with probability 1 - ``share``."""
    if rng.random() >= share:
        return (0, 0)
    first = rng.randint(low, high)
    return (first, rng.randint(first, high))


def sample_scheme(rng: random.Random, alphabet: str = SYMBOLS,
                  lengths: tuple[int, int] = (3, 8), fonts: tuple[str, ...] | None = None
                  ) -> Scheme:
    """One random scheme drawing labels of ``lengths`` from the symbols of ``alphabet``."""
    fonts = fonts or universe_fonts()
    length = rng.randint(*lengths)
    height = rng.randint(30, 80)
    aspect = rng.uniform(max(2.0, 0.45 * length), max(3.0, 0.9 * length))
    width = round(height * aspect)
    size = rng.randint(round(0.5 * height), round(0.9 * height))
    size = max(10, min(size, round(1.5 * (width - 8) / length)))  # about fits, overlap aside
    inverted = rng.random() < INVERTED_SHARE
    page, level = _light(rng)
    if inverted:
        dark = rng.randint(0, 80)
        page, level = Palette(low=(dark,) * 3, high=(dark + rng.randint(0, 30),) * 3,
                              shades=True), dark
    vivid = not inverted and rng.random() < VIVID_SHARE
    if vivid and rng.random() < 0.6:  # most often on a white page
        white = rng.randint(235, 255)
        page, level = Palette(low=(white,) * 3, high=(255,) * 3, shades=True), white
    kind = rng.choices(("solid", "gradient", "noise"), (5, 3, 2))[0]
    if kind == "gradient" and not page.shades:  # two tints of one page
        page = Palette(low=page.low, high=tuple(min(255, c + 25) for c in page.high))  # type: ignore
    background = Background(kind=kind, colors=page, texture=rng.uniform(6, 30),
                            grain=rng.choice((1, 2, 3, 6)))
    text_colours = _vivid(rng) if vivid else _ink(rng, level, inverted)
    noise_colours = Palette(glyphs=True) if rng.random() < 0.6 else text_colours
    dark_ink = Palette(low=(0, 0, 0), high=(rng.randint(0, 90),) * 3, shades=True)
    glyphs = Glyphs(
        fonts=tuple(rng.sample(fonts, min(len(fonts), rng.choice((1, 1, 2, 3, 5))))),
        font_per=rng.choice(("character", "image")),
        size=(size, min(400, size + rng.randint(0, max(1, size // 5)))),
        rotation=rng.choice((0.0, rng.uniform(0, 15), rng.uniform(0, 35))),
        shear=rng.choice((0.0, rng.uniform(0, 0.35))),
        spacing=(rng.uniform(-2, 1), rng.uniform(1, 6)),
        overlap=(0.0, rng.choice((0.0, rng.uniform(0, 0.3)))),
        jitter=rng.uniform(0, 0.12 * height),
        margin=rng.randint(2, 8),
        colors=text_colours,
        color_per="character" if vivid else rng.choice(("character", "image")),
    )
    warp = Warp(
        sine=Sine(amplitude=(0.0, rng.uniform(0, 0.08 * height)) if rng.random() < 0.35
                  else (0.0, 0.0), period=(rng.uniform(30, 80), rng.uniform(80, 200))),
        elastic=Elastic(strength=(0.0, rng.uniform(0.5, 3.5)) if rng.random() < 0.25
                        else (0.0, 0.0), scale=rng.randint(8, 20)))
    area = width * height
    # a rain of dashes from 0.1 of the height to `dash` long (mean 0.05 h + dash / 2),
    # `dashes` at most: enough to cover 8% to 25% of the canvas
    dash = rng.uniform(0.2, 0.4) * height
    dashes = round(rng.uniform(0.08, 0.25) * area / (0.05 * height + dash / 2))
    noise = Noise(
        ellipses=Ellipses(count=_maybe(rng, 0.15, 1, 4), colors=noise_colours,
                          width=(10.0, 0.5 * width), height=(8.0, float(height))),
        arcs=Arcs(count=_maybe(rng, 0.3, 1, 3), thickness=(1, rng.randint(1, 3)),
                  colors=noise_colours, width=(0.3 * width, 1.2 * width),
                  height=(0.3 * height, 1.2 * height)),
        lines=rng.choices((
            Lines(count=_maybe(rng, 0.4, 1, 8), thickness=(1, rng.randint(1, 3)),
                  colors=noise_colours, length=(0.2 * width, 1.2 * width)),
            Lines(count=_maybe(rng, 0.6, 5, 40), thickness=(1, 1),  # a few short hairs
                  colors=noise_colours, length=(3.0, 0.25 * width)),
            Lines(count=_maybe(rng, 0.8, max(3, dashes // 3), max(5, dashes)), thickness=(1, 1),
                  colors=dark_ink if rng.random() < 0.7 else noise_colours,
                  length=(0.1 * height, dash)),  # a rain of short dashes
        ), (6, 2, 2))[0],
        strike=Strike(count=_maybe(rng, 0.15, 1, 1), thickness=(1, rng.randint(1, 3)),
                      colors=noise_colours),
        dots=Dots(count=_maybe(rng, 0.5, 0, max(1, area // 40)), radius=(0, rng.randint(0, 2)),
                  colors=Palette(glyphs=True) if rng.random() < 0.5 else page),
    )
    text = Text()
    symbols = "".join(c for c in rng.choices([s for s, _ in _SETS], [w for _, w in _SETS])[0]
                      if c in alphabet) or alphabet
    arithmetic = set(string.digits + "=?") | {"+", "-"}
    if rng.random() < ARITHMETIC_SHARE and arithmetic <= set(alphabet):
        operators = "".join(o for o in OPERATORS if o in alphabet)
        top = rng.choice((9, 20, 99))
        text = Text(kind="arithmetic", operators=operators, operands=(0, top),
                    question=rng.choice(("either", "=?", "=")))
        symbols = string.digits + operators + "=?"
    scheme = Scheme(size=(width, height), alphabet=symbols, length=(length, length),
                    name="universe", mode=rng.choice(("RGB", "RGB", "RGB", "L")),
                    blur=(0.0, rng.choice((0.0, 0.0, rng.uniform(0.3, 1.2)))),
                    background=background, glyphs=glyphs, warp=warp, noise=noise, text=text)
    if text.kind == "arithmetic":
        scheme = replace(scheme, length=(3, text.longest()))
    return scheme


@dataclass(frozen=True)
class Universe(Canvas):
    """Stands where a :class:`Scheme` does; each image is drawn by its own sampled scheme.

    ``size`` is a nominal canvas (a model's input is fitted to it; real images vary);
    ``alphabet`` and ``length`` narrow what the sampled schemes draw.
    """

    alphabet: str = SYMBOLS
    length: tuple[int, int] = (3, 8)
    size: tuple[int, int] = (200, 50)
    name: str = "universe"
    mode: str = "RGB"
    text: Text = field(default_factory=Text)
    rings: None = None
    source: str = field(default="universe", compare=False)

    layout = "universe"

    def sample(self, rng: random.Random) -> Scheme:
        return sample_scheme(rng, self.alphabet, self.length)

    def render(self, rng: random.Random) -> Rendered:
        """One image from a freshly sampled scheme."""
        return render_glyphs(self.sample(rng), rng)

    def fingerprint(self) -> str:
        """Hash of what decides the images: the settings and the fonts (by name)."""
        settings = {"alphabet": self.alphabet, "length": list(self.length),
                    "size": list(self.size), "version": UNIVERSE_VERSION,
                    "fonts": [Path(f).name for f in universe_fonts()]}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


UNIVERSE = Universe()
