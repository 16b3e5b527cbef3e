"""The labelling queue behind ``/label``: unlabelled images, least confident first, saved
under their label without ever overwriting a file (seed 002's annotation tool)."""

from __future__ import annotations

import mimetypes
import os
import re
import threading
from pathlib import Path

from captchalab.data import IMAGE_SUFFIXES
from captchalab.fileio import write_temporary
from captchalab.runtime.recognizer import ImageFailure, Recognizer

_TRAILING_NUMBER = re.compile(r"_\d+$")  # reserved: the data reader strips it from file names
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def check_label(label: str) -> str:
    """A label usable as a file name that reads back as itself, or a ``ValueError``."""
    text = label.strip()
    if not text:
        raise ValueError("empty label")
    if len(text) > 64:
        raise ValueError(f"label of {len(text)} characters; at most 64")
    if _FORBIDDEN.search(text) or text.startswith("."):
        raise ValueError(f"label {text!r} cannot be a file name")
    if _TRAILING_NUMBER.search(text):
        raise ValueError(f"label {text!r} ends in _<digits>, which file names use for copies")
    return text


def save_without_overwrite(data: bytes, folder: Path, stem: str, suffix: str) -> Path:
    """Write ``data`` as ``folder/stem+suffix`` or, when taken, ``stem_1``, ``stem_2``, ...

    The bytes go to a temporary file first and are hard-linked into place, which fails if
    the name exists: concurrent writers (two browser tabs, two servers) never replace each
    other's files, and a reader never sees half a file.
    """
    temporary = write_temporary(folder / f"{stem}{suffix}", data, prefix="label")
    try:
        n = 0
        while True:
            target = folder / f"{stem}{'' if n == 0 else f'_{n}'}{suffix}"
            try:
                os.link(temporary, target)
                return target
            except FileExistsError:
                n += 1
    finally:
        temporary.unlink(missing_ok=True)


class LabelQueue:
    """Images of ``source_dir`` ordered by the model's confidence, lowest first."""

    def __init__(self, recognizer: Recognizer, source_dir: str | Path, out_dir: str | Path,
                 batch_size: int = 64) -> None:
        self.source_dir, self.out_dir = Path(source_dir), Path(out_dir)
        if not self.source_dir.is_dir():
            raise ValueError(f"{self.source_dir}: no such folder to label")
        if self.source_dir.resolve() == self.out_dir.resolve():
            raise ValueError(f"{self.out_dir}: the labelled folder must differ from the "
                             "folder being labelled")
        paths = sorted(p for p in self.source_dir.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        self.unreadable: list[str] = []
        self.items: list[dict] = []
        readings = recognizer.predict(paths, batch_size, errors="return")
        for path, p in zip(paths, readings):
            if isinstance(p, ImageFailure):  # one bad file must not stop the page
                self.unreadable.append(path.name)
                continue
            self.items.append({"file": path.name, "guess": p.characters if p.ordered else "",
                               "confidence": round(p.confidence, 4)})
        self.items.sort(key=lambda item: (item["confidence"], item["file"]))
        self.paths = {path.name: path for path in paths}
        self.saved: dict[str, str] = {}  # saved file name -> source image name
        self.lock = threading.Lock()

    def progress(self) -> dict:
        return {"labelled": len(set(self.saved.values())), "total": len(self.items)}

    def state(self) -> dict:
        """The images still to label, in order, with the model's guesses and the progress."""
        with self.lock:
            done = set(self.saved.values())
            pending = [item for item in self.items if item["file"] not in done]
            return {"items": pending, "unreadable": self.unreadable, **self.progress()}

    def source(self, name: str) -> Path | None:
        return self.paths.get(name)

    @staticmethod
    def media_type(path: Path) -> str:
        return mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    def save(self, name: str, label: str) -> Path:
        path = self.source(name)
        if path is None:
            raise LookupError(f"{name}: not an image of the folder being labelled")
        target = save_without_overwrite(path.read_bytes(), self.out_dir, check_label(label),
                                        path.suffix.lower())
        with self.lock:
            self.saved[target.name] = name
        return target

    def undo(self, saved: str) -> str:
        with self.lock:
            if saved not in self.saved:
                raise LookupError(f"{saved}: not a label saved by this server")
            source = self.saved.pop(saved)
        (self.out_dir / saved).unlink(missing_ok=True)
        return source
