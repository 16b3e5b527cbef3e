"""Shared pieces of written reports: where and when a measurement ran, and charts as PNG."""

from __future__ import annotations

import io
import os
import platform
from datetime import datetime, timezone
from typing import Any


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
