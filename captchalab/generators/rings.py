"""The six-digit "rings" captcha of seed 003, as that write-up describes it.

310 x 80 grey (221) canvas with a 1-px black border, 15 concentric ellipses 16/8 px apart,
six digits from {2,3,4,5,6,8} at x = 17, 57, 115, 170, 217, 260 and a random y in 14..45,
each rotated uniformly within +-45 degrees and drawn anti-aliased in a 27 px sans font,
then 500 black pepper pixels. Circles and pepper are not anti-aliased.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from captchalab.generators.base import Rendered
from captchalab.generators.fonts import load_font

WIDTH, HEIGHT, BACKGROUND = 310, 80, 221
DIGITS = "234568"
DIGIT_X = (17, 57, 115, 170, 217, 260)
DIGIT_Y = (14, 45)
ROTATION = 45.0
FONT_SIZE = 27
RINGS, RING_STEP = 15, (16, 8)
PEPPER = 500
GLYPH_CANVAS = (20, 28)  # the write-up's 20 x 25 clips the foot of a 27 px digit


def _background() -> Image.Image:
    image = Image.new("L", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH - 1, HEIGHT - 1), outline=0)
    for i in range(1, RINGS):
        dx, dy = i * RING_STEP[0], i * RING_STEP[1]
        box = (WIDTH // 2 - dx, HEIGHT // 2 - dy, WIDTH // 2 + dx, HEIGHT // 2 + dy)
        draw.ellipse(box, outline=0)
    return image


_BACKGROUND = _background()


def render_rings(rng: random.Random) -> Rendered:
    """One rings captcha with its label, and each digit's centre and box in pixels."""
    image = _BACKGROUND.copy()
    font = load_font("DejaVuSans.ttf", FONT_SIZE)
    label, centres, boxes = [], [], []
    for x in DIGIT_X:
        digit = rng.choice(DIGITS)
        glyph = Image.new("LA", GLYPH_CANVAS, (150, 0))
        ImageDraw.Draw(glyph).text((0, 0), digit, font=font, fill=(0, 255))
        glyph = glyph.rotate(rng.uniform(-ROTATION, ROTATION), resample=Image.Resampling.BICUBIC,
                             expand=True)
        y = rng.randint(*DIGIT_Y)
        alpha = glyph.getchannel("A")
        image.paste(glyph.getchannel("L"), (x, y), alpha)
        left, top, right, bottom = alpha.getbbox() or (0, 0, *glyph.size)
        box = (x + left, y + top, x + right, y + bottom)
        label.append(digit)
        boxes.append(box)
        centres.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    pixels = np.array(image)
    xs = [rng.randint(0, WIDTH - 1) for _ in range(PEPPER)]
    ys = [rng.randint(0, HEIGHT - 1) for _ in range(PEPPER)]
    pixels[ys, xs] = 0
    return Rendered(Image.fromarray(pixels), "".join(label), centres, boxes)
