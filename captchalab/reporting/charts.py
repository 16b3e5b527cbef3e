"""Shared pieces of written reports: where and when a measurement ran, and charts as PNG.

Every chart of the package is drawn through :func:`pyplot` (matplotlib on its file-only
backend) and written through :func:`write_png` (atomically), so no display is ever needed.
"""

from __future__ import annotations

import io
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from captchalab.fileio import atomic_write_bytes


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(figure: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for an atomic write); the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(figure)
    return buffer.getvalue()


def write_png(figure: Any, path: str | Path, dpi: int = 100) -> Path:
    """Lay the figure out tightly and write it to ``path`` atomically; the figure is closed."""
    figure.tight_layout()
    return atomic_write_bytes(path, png_bytes(figure, dpi))


def label_bars(axis: Any, bars: Any, texts: list[str]) -> None:
    """Write each horizontal bar's value at its end, so a zero bar reads as zero, not as
    missing data."""
    for bar, text in zip(bars, texts):
        axis.annotate(text, (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                      xytext=(4, 0), textcoords="offset points", va="center", fontsize=9)
