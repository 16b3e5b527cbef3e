"""Locate TrueType fonts on any machine (matplotlib ships DejaVu, so one is always there)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

_SYSTEM_FOLDERS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/share/fonts/dejavu",
    "/Library/Fonts",
    "C:/Windows/Fonts",
)


def font_path(name: str = "DejaVuSans.ttf") -> Path:
    """Path of font file ``name``: a path as given, matplotlib's bundled copy, or a system one."""
    given = Path(name)
    if given.is_file():
        return given
    import matplotlib

    folders = [Path(matplotlib.get_data_path()) / "fonts" / "ttf", *map(Path, _SYSTEM_FOLDERS)]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"font {name!r} not found (looked in {', '.join(map(str, folders))})")


@lru_cache(maxsize=64)
def load_font(name: str = "DejaVuSans.ttf", size: int = 27) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size)
