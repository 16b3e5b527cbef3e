"""Locate TrueType fonts on any machine (matplotlib ships DejaVu, so one is always there);
fonts of other scripts come from the system (Debian's font packages)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

_SYSTEM_FOLDERS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/truetype/wqy",
    "/usr/share/fonts/opentype/noto",
    "/usr/share/fonts/truetype/liberation2",
    "/usr/share/fonts/truetype/freefont",
    "/usr/share/fonts/TTF",
    "/usr/share/fonts/opentype/urw-base35",
    "/usr/share/fonts/dejavu",
    "/Library/Fonts",
    "C:/Windows/Fonts",
)
# the Debian package that installs a font file, to name it when the font is missing
PACKAGES = {"wqy-microhei.ttc": "fonts-wqy-microhei", "wqy-zenhei.ttc": "fonts-wqy-zenhei",
            "NotoSansCJK-Regular.ttc": "fonts-noto-cjk",
            "LiberationSans-Regular.ttf": "fonts-liberation2",
            "FreeSans.ttf": "fonts-freefont-ttf", "FreeSerif.ttf": "fonts-freefont-ttf"}


def search_folders() -> list[Path]:
    """Where fonts are looked for: matplotlib's bundled fonts, then the system's."""
    import matplotlib

    return [Path(matplotlib.get_data_path()) / "fonts" / "ttf", *map(Path, _SYSTEM_FOLDERS)]


def font_path(name: str = "DejaVuSans.ttf") -> Path:
    """Path of font file ``name``: a path as given, matplotlib's bundled copy, or a system one."""
    given = Path(name)
    if given.is_file():
        return given
    folders = search_folders()
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    package = PACKAGES.get(given.name)
    hint = f"; it comes with Debian's {package} (apt-get install {package})" if package else ""
    raise FileNotFoundError(f"font {name!r} not found (looked in "
                            f"{', '.join(map(str, folders))}){hint}")


@lru_cache(maxsize=64)
def load_font(name: str = "DejaVuSans.ttf", size: int = 27) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size)
