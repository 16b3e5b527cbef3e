"""A contact sheet of the synthetic universe: 48 images, each from its own random scheme,
with its label, to look at as a person would (BENCHMARKS.md, "The base model").

    python benchmarks/universe_samples.py --out benchmarks/universe_samples.png
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image, ImageDraw

from captchalab.fileio import atomic_write_bytes
from captchalab.generators import render

COLUMNS, ROWS, CELL = 4, 12, (260, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sheet = Image.new("RGB", (COLUMNS * CELL[0], ROWS * CELL[1]), "white")
    draw = ImageDraw.Draw(sheet)
    for k in range(COLUMNS * ROWS):
        item = render("universe", args.seed, k)
        image = item.image.convert("RGB")
        image.thumbnail((CELL[0] - 10, CELL[1] - 20))
        x, y = (k % COLUMNS) * CELL[0], (k // COLUMNS) * CELL[1]
        sheet.paste(image, (x, y))
        draw.text((x, y + CELL[1] - 18), f"{item.label}  ({item.image.width}x"
                  f"{item.image.height})", fill=(200, 0, 0))
    buffer = io.BytesIO()
    sheet.quantize(128).save(buffer, "PNG", optimize=True)  # a small file to commit
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
