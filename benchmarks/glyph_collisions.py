"""Which symbols of a scheme the generator draws alike: a floor on any reader's errors.

For each font of the scheme and each symbol of its alphabet, draws the glyph at every size
of the scheme's range (before rotation, warp and noise; inked where > 127, cropped to the
ink). Two symbols' draws are *the same* when their bitmaps are equal, and *alike* when
their boxes differ by at most one pixel each way and, padded to one box, they agree on at
least 90% of the inked pixels (intersection over union): a pixel of height is what the
scheme's size jitter, rotation and warp blur away. Then, with the scheme's fonts and
lengths, estimates the share of captchas that hold at least one alike draw, and the
accuracy of a reader that guesses between two.

    python benchmarks/glyph_collisions.py benchmarks/schemes/hard62.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from captchalab.generators.drawing import glyph
from captchalab.generators.scheme import load_scheme


def inked(font: str, size: int, char: str) -> np.ndarray:
    pixels = np.asarray(glyph(font, size, char).mask) > 127
    ys, xs = np.nonzero(pixels)
    return pixels[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bitmaps padded to one box, top-left aligned."""
    h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    pa, pb = np.zeros((h, w), bool), np.zeros((h, w), bool)
    pa[:a.shape[0], :a.shape[1]], pb[:b.shape[0], :b.shape[1]] = a, b
    return (pa & pb).sum() / max(1, (pa | pb).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scheme", help="a scheme file or preset name")
    parser.add_argument("--iou", type=float, default=0.9, help="agreement that counts as alike")
    args = parser.parse_args()
    scheme = load_scheme(args.scheme)
    alphabet, sizes = scheme.alphabet, range(scheme.glyphs.size[0], scheme.glyphs.size[1] + 1)
    alike_share = 0.0  # P(a drawn character has an alike draw of another symbol)
    for font in scheme.glyphs.fonts:
        draws = {(c, s): inked(font, s, c) for c in alphabet for s in sizes}
        same, alike = set(), {}
        for (c, s), bitmap in draws.items():
            for (d, _), other in draws.items():
                if d == c or abs(bitmap.shape[0] - other.shape[0]) > 1 \
                        or abs(bitmap.shape[1] - other.shape[1]) > 1:
                    continue
                if bitmap.shape == other.shape and np.array_equal(bitmap, other):
                    same.add("/".join(sorted(c + d)))
                if agreement(bitmap, other) >= args.iou:
                    alike.setdefault((c, s), set()).add(d)
        pairs = sorted({"/".join(sorted(c + d)) for (c, _), ds in alike.items() for d in ds})
        print(f"{Path(font).name}: the same bitmap: {', '.join(sorted(same)) or 'none'}; "
              f"alike: {', '.join(pairs) or 'none'} ({len(alike)} of {len(draws)} draws)")
        alike_share += len(alike) / len(draws) / len(scheme.glyphs.fonts)
    mean_length = sum(scheme.length) / 2
    holding = 1 - (1 - alike_share) ** mean_length
    print(f"a drawn character has an alike draw with P {alike_share:.4f}; a captcha of "
          f"{mean_length:g} characters holds one with P {holding:.3f}; a perfect reader that "
          f"guesses between two reads about {1 - holding / 2:.1%}")


if __name__ == "__main__":
    main()
