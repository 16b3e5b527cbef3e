"""The six-digit "rings" captcha of seed 003, as that write-up describes it.

310 x 80 grey (221) canvas with a 1-px black border, 15 concentric ellipses 16/8 px apart,
six digits from {2,3,4,5,6,8} at x = 17, 57, 115, 170, 217, 260 and a random y in 14..45,
each rotated uniformly within +-45 degrees and drawn anti-aliased in a 27 px sans font,
then 500 black pepper pixels. Circles and pepper are not anti-aliased.

These numbers live in ``presets/rings.toml`` (its ``[rings]`` table); this
module draws any such table. Each digit is drawn on a ``glyph_box`` canvas (the write-up's
20 x 25 clips the foot of a 27 px digit, so the preset uses 20 x 28), rotated with the canvas
expanded, and pasted with its top-left corner at (x, y). Ellipse i (1 <= i < count) spans
i * step px either side of the centre; i = 0 would be a point and is not drawn.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from captchalab.generators.drawing import Rendered
from captchalab.generators.fonts import load_font

if TYPE_CHECKING:
    from captchalab.generators.scheme import Rings, Scheme

_PAPER = 150  # grey under the digits' transparent pixels: it tints their bicubic edges


@lru_cache(maxsize=8)
def _background(rings: Rings, size: tuple[int, int]) -> Image.Image:
    width, height = size
    image = Image.new("L", size, rings.background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, height - 1), outline=rings.ink)
    for i in range(1, rings.count):
        dx, dy = i * rings.step[0], i * rings.step[1]
        box = (width // 2 - dx, height // 2 - dy, width // 2 + dx, height // 2 + dy)
        draw.ellipse(box, outline=rings.ink)
    return image


def render_rings(scheme: Scheme, rng: random.Random) -> Rendered:
    """One rings captcha with its label, and each digit's centre and box in pixels."""
    rings = scheme.rings
    assert rings is not None
    width, height = scheme.size
    image = _background(rings, scheme.size).copy()
    font = load_font(rings.font[0], rings.font_size)
    label, centres, boxes = [], [], []
    for x in rings.positions:
        digit = rng.choice(scheme.alphabet)
        glyph = Image.new("LA", rings.glyph_box, (_PAPER, 0))
        ImageDraw.Draw(glyph).text((0, 0), digit, font=font, fill=(rings.ink, 255))
        glyph = glyph.rotate(rng.uniform(-rings.rotation, rings.rotation),
                             resample=Image.Resampling.BICUBIC, expand=True)
        y = rng.randint(*rings.y)
        alpha = glyph.getchannel("A")
        image.paste(glyph.getchannel("L"), (x, y), alpha)
        left, top, right, bottom = alpha.getbbox() or (0, 0, *glyph.size)
        box = (x + left, y + top, x + right, y + bottom)
        label.append(digit)
        boxes.append(box)
        centres.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    pixels = np.array(image)
    xs = [rng.randint(0, width - 1) for _ in range(rings.pepper)]
    ys = [rng.randint(0, height - 1) for _ in range(rings.pepper)]
    pixels[ys, xs] = rings.ink
    result = Image.fromarray(pixels)
    return Rendered(result if scheme.mode == "L" else result.convert(scheme.mode),
                    "".join(label), centres, boxes)
