"""The served models, by name, and how one is swapped for a new file without a restart.

A request takes the model it will be read by once, at its start; a reload loads the new
file, checks it reads a few recent images, starts its batcher and only then puts it in
place. Requests already holding the old model (queued or in a forward pass) finish on it;
its batcher stops once its queue is empty. A file that fails to load or to read is
refused, and the old model keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captchalab.runtime.model_file import resolve_model
from captchalab.runtime.recognizer import Recognizer
from captchalab.service.batching import MicroBatcher
from captchalab.service.limits import Limits

RECENT_IMAGES = 8  # prepared images kept per model, to check a reloaded model reads them


class ReloadRefused(ValueError):
    """A model file that cannot replace the served one; the old one keeps serving."""


@dataclass
class ServedModel:
    """A recognizer under a name, with the version clients see (a hash of its file)."""

    name: str
    recognizer: Recognizer
    version: str
    batcher: MicroBatcher = field(repr=False)
    path: Path = Path("model")
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_IMAGES), repr=False)

    @classmethod
    def load(cls, path: str | Path, name: str | None = None, limits: Limits | None = None,
             threads: int | None = None) -> ServedModel:
        name = name or Path(path).stem  # "base" for the base model
        path = resolve_model(path)
        limits = limits or Limits()
        recognizer = Recognizer.load(path, threads=threads)
        version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        batcher = MicroBatcher(recognizer, limits.max_batch, limits.batch_wait)
        return cls(name, recognizer, version, batcher, path)

    def describe(self, default: bool) -> dict:
        r = self.recognizer
        return {"name": self.name, "version": self.version, "family": r.family,
                "alphabet": r.alphabet.symbols, "reads_order": r.ordered,
                "input": {"height": r.preprocessing.height, "width": r.preprocessing.width},
                "format": Path(r.path).suffix.lstrip("."), "default": default,
                "reads": r.card.reads}


class ModelSet:
    """The models a service serves; the first is the default."""

    def __init__(self, models: list[ServedModel], limits: Limits, threads: int | None = None
                 ) -> None:
        if not models:
            raise ValueError("serve needs at least one model")
        self.by_name = {m.name: m for m in models}
        if len(self.by_name) != len(models):
            raise ValueError("two served models have the same name; name them MODEL=NAME")
        self.order = [m.name for m in models]
        self.limits, self.threads = limits, threads
        self.swaps = 0
        self.lock = asyncio.Lock()

    def __iter__(self):
        return (self.by_name[name] for name in self.order)

    @property
    def default(self) -> ServedModel:
        return self.by_name[self.order[0]]

    def get(self, name: str | None) -> ServedModel | None:
        return self.default if not name else self.by_name.get(name)

    async def reload(self, name: str, path: str | Path | None = None) -> ServedModel:
        """Swap model ``name`` for the file at ``path`` (default: its own file, read again)."""
        async with self.lock:
            old = self.by_name[name]
            source = Path(path) if path else old.path
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(
                    None, ServedModel.load, source, name, self.limits, self.threads)
                await loop.run_in_executor(None, self_check, new, list(old.recent))
            except Exception as error:  # any failure leaves the old model in place
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ReloadRefused(f"{source}: not swapped in, {name!r} keeps serving version "
                                    f"{old.version} ({reason})") from None
            new.recent.extend(old.recent)
            new.batcher.start()
            self.by_name[name] = new  # requests from now on read with the new model
            self.swaps += 1
        asyncio.get_running_loop().create_task(old.batcher.drain_and_stop())
        return new


def self_check(model: ServedModel, recent: list[np.ndarray]) -> None:
    """The model must read the recent images (or a blank one of its input) without error."""
    pre = model.recognizer.preprocessing
    images = [image for image in recent if image.shape == (pre.height, pre.width)]
    pixels = np.stack(images) if images else np.full((1, pre.height, pre.width), 255,
                                                     np.uint8)
    readings = model.recognizer.read(pixels)
    if len(readings) != len(pixels) or not all(0.0 <= r.confidence <= 1.0 for r in readings):
        raise ValueError("its readings of recent images are malformed")
