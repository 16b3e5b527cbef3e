"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The temporary file is created with mode 0666 and the process umask applies, so the file
ends up with the mode a plain ``open(path, "w")`` would give it (0644 under the usual umask
022), readable by a web server or another user as any other output file would be.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

NORMAL_MODE = 0o666  # before the umask, as open() creates files


def temporary_beside(path: Path, prefix: str = "") -> tuple[int, Path]:
    """A new, empty, exclusively created file in ``path``'s folder: ``(fd, its path)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.parent / f".{prefix or path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NORMAL_MODE), temporary
        except FileExistsError:
            continue


def write_temporary(path: Path, data: bytes, prefix: str = "", sync: bool = True) -> Path:
    """``data`` in a new temporary file beside ``path`` (flushed to disk with ``sync``)."""
    handle, temporary = temporary_beside(path, prefix)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            if sync:
                os.fsync(stream.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def atomic_write_bytes(path: str | Path, data: bytes, sync: bool = True) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    temporary = write_temporary(path, data, sync=sync)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
