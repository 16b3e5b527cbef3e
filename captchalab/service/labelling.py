"""The labelling queue behind ``/label``: unlabelled images, least confident first, saved
under their label without ever overwriting a file (seed 002's annotation tool)."""

from __future__ import annotations

import mimetypes
import os
import re
import threading
from pathlib import Path

from captchalab.data import IMAGE_SUFFIXES
from captchalab.fileio import atomic_write_bytes, atomic_write_text, write_temporary
from captchalab.runtime.recognizer import ImageFailure, Recognizer
from captchalab.service.review import SIDECAR, read_note

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
        self.recognizer, self.batch_size = recognizer, batch_size
        self.saved: dict[str, str] = {}  # saved file name -> source image name
        self.lock = threading.Lock()
        self.unreadable: list[str] = []
        self.items: list[dict] = []
        self.paths: dict[str, Path] = {}
        self.refresh()

    def _images(self) -> list[Path]:
        return sorted(p for p in self.source_dir.iterdir()
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                      and not p.name.startswith("."))

    def refresh(self) -> None:
        """Read the folder and the model's guesses (once: the folder does not change)."""
        paths = self._images()
        readings = self.recognizer.predict(paths, self.batch_size, errors="return")
        items = []
        for path, p in zip(paths, readings):
            if isinstance(p, ImageFailure):  # one bad file must not stop the page
                self.unreadable.append(path.name)
                continue
            items.append({"file": path.name, "guess": p.characters if p.ordered else "",
                          "confidence": round(p.confidence, 4)})
        self._set(items, paths)

    def _set(self, items: list[dict], paths: list[Path]) -> None:
        items.sort(key=lambda item: (item["confidence"], item["file"]))
        with self.lock:
            self.items, self.paths = items, {path.name: path for path in paths}

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
        if path is None or not path.is_file():
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


class ReviewLabelQueue(LabelQueue):
    """The review queue's folder (``serve --review-dir``) as a labelling queue: the readings
    the service gave are the guesses, least confident first; the folder grows while the
    service runs, so it is read again at each look; a saved image moves out of it (undo
    puts it back)."""

    def __init__(self, recognizer: Recognizer, source_dir: str | Path, out_dir: str | Path
                 ) -> None:
        self.taken: dict[str, tuple[str, bytes, str | None]] = {}  # saved -> source, bytes, note
        super().__init__(recognizer, source_dir, out_dir)

    def refresh(self) -> None:
        paths = self._images()
        items = []
        for path in paths:
            note = read_note(path) or {}
            items.append({"file": path.name, "guess": str(note.get("reading", "")),
                          "confidence": round(float(note.get("confidence", 0.0)), 4)})
        self._set(items, paths)

    def progress(self) -> dict:
        labelled = len(self.saved)
        return {"labelled": labelled, "total": len(self.items) + labelled}

    def state(self) -> dict:
        self.refresh()
        return super().state()

    def save(self, name: str, label: str) -> Path:
        path = self.source(name)
        if path is None or not path.is_file():
            raise LookupError(f"{name}: not an image of the review queue")
        data, sidecar = path.read_bytes(), path.with_suffix(SIDECAR)
        note = sidecar.read_text(encoding="utf-8") if sidecar.is_file() else None
        target = super().save(name, label)
        with self.lock:
            self.taken[target.name] = (name, data, note)
        path.unlink(missing_ok=True)  # moved: labelled, it leaves the queue
        sidecar.unlink(missing_ok=True)
        return target

    def undo(self, saved: str) -> str:
        source = super().undo(saved)
        with self.lock:
            name, data, note = self.taken.pop(saved, (source, None, None))
        if data is not None:
            atomic_write_bytes(self.source_dir / name, data)
            if note is not None:
                atomic_write_text((self.source_dir / name).with_suffix(SIDECAR), note)
        return source
