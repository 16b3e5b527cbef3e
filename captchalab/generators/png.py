"""A small, fast PNG encoder for the generator's 8-bit grey (L) and RGB images.

Every row uses the "Up" filter (the difference to the row above, one numpy subtraction) and
the data is deflated at zlib level 1: about twice as fast as Pillow's encoder at its fastest
setting, with files as small. Any PNG reader opens the result.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {"L": 0, "RGB": 2}
UP = 2  # PNG filter type


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def encode_png(image: Image.Image, level: int = 1) -> bytes:
    """``image`` (mode L or RGB) as PNG file bytes."""
    if image.mode not in COLOUR_TYPES:
        raise ValueError(f"encode_png takes L or RGB images, not {image.mode}")
    rows = np.asarray(image).reshape(image.height, -1)
    filtered = np.empty((image.height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = UP
    filtered[0, 1:] = rows[0]  # the row above the first one counts as zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8: modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, COLOUR_TYPES[image.mode],
                         0, 0, 0)
    return b"".join((SIGNATURE, _chunk(b"IHDR", header),
                     _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)),
                     _chunk(b"IEND", b"")))
