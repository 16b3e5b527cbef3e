"""The review queue: images the model was unsure of, kept for a person to label.

``serve --review-dir DIR --review-below P`` hands every image read with confidence below P
to :class:`ReviewQueue`. A request only puts it on an in-memory queue; one background
thread writes it, so a slow disk never slows an answer (when even that queue is full, the
image is dropped and counted). Each image is stored once, named by a hash of its bytes, with
a JSON file beside it: the reading, its confidence, the model and its version, the time.
Both are written atomically. The folder is bounded (files and megabytes): the oldest images
go first, and the number dropped is counted. The labelling page can serve this folder,
least confident first, pre-filled with the reading.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from captchalab.fileio import atomic_write_bytes, atomic_write_text

SIDECAR = ".json"  # beside each image: what the model read in it
PENDING_LIMIT = 1000  # images waiting to be written; more are dropped (and counted)


@dataclass(frozen=True)
class Unsure:
    """One image to keep, as the request saw it."""

    data: bytes
    suffix: str
    reading: str
    confidence: float
    model: str
    version: str


def suffix_of(data: bytes) -> str:
    """The file suffix of encoded image bytes (by their signature)."""
    signatures = {b"\x89PNG": ".png", b"\xff\xd8": ".jpg", b"GIF8": ".gif", b"BM": ".bmp",
                  b"RIFF": ".webp"}
    return next((s for sig, s in signatures.items() if data.startswith(sig)), ".png")


class ReviewQueue:
    """A bounded folder of unsure images, written by a thread of its own."""

    def __init__(self, folder: str | Path, below: float, max_files: int = 1000,
                 max_megabytes: float = 100.0) -> None:
        if not 0.0 < below <= 1.0:
            raise ValueError(f"`review_below` must be in (0, 1], got {below}")
        self.folder, self.below = Path(folder), below
        self.max_files, self.max_bytes = max_files, int(max_megabytes * 1e6)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pending: queue.Queue[Unsure | None] = queue.Queue(PENDING_LIMIT)
        self.written = self.duplicates = self.dropped = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._write_all, daemon=True,
                                       name="captchalab-review")
        self.thread.start()

    def offer(self, item: Unsure) -> bool:
        """Keep ``item`` if it is unsure; never blocks. Whether it was queued."""
        if item.confidence >= self.below:
            return False
        try:
            self.pending.put_nowait(item)
        except queue.Full:
            with self.lock:
                self.dropped += 1
            return False
        return True

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued image is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.pending.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join(timeout=10)

    def stats(self) -> dict:
        images = self._images()
        with self.lock:
            return {"folder": str(self.folder), "below": self.below, "images": len(images),
                    "megabytes": round(sum(p.stat().st_size for p in images) / 1e6, 3),
                    "written": self.written, "duplicates": self.duplicates,
                    "dropped": self.dropped}

    def _images(self) -> list[Path]:
        return [p for p in self.folder.iterdir()
                if p.is_file() and p.suffix != SIDECAR and not p.name.startswith(".")]

    def _write_all(self) -> None:
        while True:
            item = self.pending.get()
            try:
                if item is None:
                    return
                self._write(item)
            except OSError:  # a full or failing disk costs this image, never the service
                with self.lock:
                    self.dropped += 1
            finally:
                self.pending.task_done()

    def _write(self, item: Unsure) -> None:
        name = hashlib.sha256(item.data).hexdigest()[:24]
        image = self.folder / f"{name}{item.suffix}"
        if image.exists():
            with self.lock:
                self.duplicates += 1
            return
        note = {"file": image.name, "reading": item.reading,
                "confidence": round(item.confidence, 6), "model": item.model,
                "version": item.version,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
        atomic_write_bytes(image, item.data, sync=False)
        atomic_write_text(image.with_suffix(SIDECAR), json.dumps(note, ensure_ascii=False))
        with self.lock:
            self.written += 1
        self._bound()

    def _bound(self) -> None:
        """Drop the oldest images (and their notes) until the folder is within its limits."""
        images = sorted(self._images(), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in images)
        while images and (len(images) > self.max_files or total > self.max_bytes):
            oldest = images.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
            oldest.with_suffix(SIDECAR).unlink(missing_ok=True)
            with self.lock:
                self.dropped += 1


def read_note(image: Path) -> dict | None:
    """What the model read in a queued image (its JSON note), if there is one."""
    try:
        return json.loads(image.with_suffix(SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
