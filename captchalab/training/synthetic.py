"""Training on synthetic captchas drawn on the fly (``train --scheme``, ``--pretrain``).

Every epoch gets fresh images, drawn in a background process while the previous epoch
trains, so pretraining never writes files and never sees the same captcha twice. Images go
through the model's one :class:`~captchalab.data.Preprocessing`, as real ones do.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from captchalab.data import Alphabet, Preprocessing
from captchalab.generators import Scheme, SchemeError, render

VALIDATION_SEED_OFFSET = 1_000_003  # validation images never repeat a training image
MAX_DRAWING_WORKERS = 32


def drawing_workers() -> int:
    """Processes that draw the next epoch: the cores training leaves (one on two cores; on
    a GPU machine drawing is what limits the base model's run, so every core but one)."""
    return max(1, min(MAX_DRAWING_WORKERS, (os.cpu_count() or 2) - 1))


@dataclass
class Drawn:
    """A batch of drawn captchas, preprocessed: pixels, labels and centres (input pixels)."""

    pixels: np.ndarray  # (N, H, W) uint8
    labels: list[str]
    centres: list[list[tuple[float, float]]]


def draw(scheme: Scheme, preprocessing: Preprocessing, seed: int, start: int, count: int
         ) -> Drawn:
    """Captchas ``start .. start + count`` of ``seed``, resized to the model input."""
    pixels, labels, centres = [], [], []
    for index in range(start, start + count):
        item = render(scheme, seed, index)
        scale = (preprocessing.width / item.image.width, preprocessing.height / item.image.height)
        pixels.append(preprocessing.load(item.image))
        labels.append(item.label)
        centres.append([(x * scale[0], y * scale[1]) for x, y in item.centres])
    return Drawn(np.stack(pixels), labels, centres)


def fit_scheme(scheme: Scheme, alphabet: Alphabet | None, lengths: list[int] | None) -> Scheme:
    """``scheme`` drawing the symbols and label lengths of the data a model is meant for."""
    if alphabet is not None and alphabet.symbols != scheme.alphabet:
        scheme = replace(scheme, alphabet=alphabet.symbols)
    if lengths:
        span = (min(lengths), max(lengths))
        if span != tuple(scheme.length):
            if scheme.layout == "rings":
                raise SchemeError(f"{scheme.source or scheme.name}: draws labels of "
                                  f"{scheme.length[0]} characters, the data has {span}")
            scheme = replace(scheme, length=span)
    return scheme


def _joined(parts: list[Drawn]) -> Drawn:
    return Drawn(np.concatenate([p.pixels for p in parts]),
                 [label for p in parts for label in p.labels],
                 [centre for p in parts for centre in p.centres])


class SyntheticStream:
    """Fresh images for each epoch; the next epoch's are drawn while this one trains, by
    ``workers`` processes (:func:`drawing_workers` by default), each a share of the epoch."""

    def __init__(self, scheme: Scheme, preprocessing: Preprocessing, epoch_size: int,
                 seed: int, background: bool = True, workers: int | None = None) -> None:
        self.scheme, self.preprocessing = scheme, preprocessing
        self.epoch_size, self.seed = epoch_size, seed
        self.workers = workers or drawing_workers()
        self.executor: Executor | None = (ProcessPoolExecutor(self.workers) if background
                                          else None)
        self.pending: dict[int, list[Future]] = {}

    def _spans(self, epoch: int) -> list[tuple[int, int]]:
        """(start, count) of each worker's share of ``epoch``'s images."""
        first, size = epoch * self.epoch_size, self.epoch_size
        bounds = np.linspace(0, size, self.workers + 1).round().astype(int).tolist()
        return [(first + a, b - a) for a, b in zip(bounds, bounds[1:]) if b > a]

    def _submit(self, epoch: int) -> None:
        if self.executor is not None and epoch not in self.pending:
            self.pending[epoch] = [
                self.executor.submit(draw, self.scheme, self.preprocessing, self.seed, start,
                                     count) for start, count in self._spans(epoch)]

    def epoch(self, epoch: int, prefetch: bool = True) -> Drawn:
        """The images of ``epoch`` (0-based); with ``prefetch`` start drawing the next's."""
        if self.executor is not None and self.workers > 1:  # drawn by all workers at once
            self._submit(epoch)
        futures = self.pending.pop(epoch, None)
        drawn = (_joined([future.result() for future in futures]) if futures is not None else
                 draw(self.scheme, self.preprocessing, self.seed, epoch * self.epoch_size,
                      self.epoch_size))
        if prefetch:
            self._submit(epoch + 1)
        return drawn

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None
