"""Synthetic captcha schemes by name, and writing a labelled folder of them."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from captchalab.data.annotations import ANNOTATIONS_FILE, write_centres
from captchalab.fileio import atomic_write_bytes


@dataclass(frozen=True)
class Rendered:
    """A generated captcha: image, label, and each character's centre and box (pixels)."""

    image: Image.Image
    label: str
    centres: list[tuple[float, float]]
    boxes: list[tuple[int, int, int, int]]


Renderer = Callable[[random.Random], Rendered]


def schemes() -> dict[str, Renderer]:
    """Built-in schemes by name."""
    from captchalab.generators.rings import render_rings

    return {"rings": render_rings}


def render(scheme: str, seed: int, index: int) -> Rendered:
    """Image ``index`` of ``scheme`` for ``seed``: the same inputs always give the same image."""
    known = schemes()
    if scheme not in known:
        raise ValueError(f"unknown captcha scheme {scheme!r} (known: {', '.join(sorted(known))})")
    return known[scheme](random.Random(f"{scheme}:{seed}:{index}"))


def generate(scheme: str, count: int, out: str | Path, seed: int = 0,
             advance: Callable[[], None] | None = None) -> Path:
    """Write ``count`` images ``<label>_<n>.png`` and ``annotations.jsonl`` into ``out``."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        item = render(scheme, seed, index)
        name = f"{item.label}_{index}.png"
        buffer = io.BytesIO()
        item.image.save(buffer, format="PNG")
        atomic_write_bytes(out / name, buffer.getvalue())
        rows.append({
            "file": name, "label": item.label,
            "centres": [[round(x, 2), round(y, 2)] for x, y in item.centres],
            "boxes": [list(b) for b in item.boxes],
        })
        if advance:
            advance()
    write_centres(out / ANNOTATIONS_FILE, rows)
    return out
