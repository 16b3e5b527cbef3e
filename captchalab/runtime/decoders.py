"""Decoders by name: network outputs (numpy) -> :class:`Decoded`, one per image.

A model family names its decoder; the same decoder serves training-time validation, the
``Recognizer`` and any other runtime, so every place reads outputs the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from captchalab.runtime import ctc
from captchalab.runtime.decoded import Decoded, DecodingSettings
from captchalab.runtime.heatmap import decode_heatmap

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.1, 0.91, 0.05))  # tuning grid


def _ctc(outputs: np.ndarray, settings: DecodingSettings) -> list[Decoded]:
    """``(N, T, C)`` log-probabilities, blank = 0."""
    return ctc.decode_batch(outputs, settings.method, settings.beam_width, settings.length)


def _positions(outputs: np.ndarray, settings: DecodingSettings) -> list[Decoded]:
    """``(N, L, C)`` log-probabilities, one softmax per character position."""
    probs = np.exp(outputs[:, :, 1:].astype(np.float64))  # class 0 is never a character
    best = probs.argmax(axis=2)
    scores = np.take_along_axis(probs, best[:, :, None], axis=2)[:, :, 0]
    return [Decoded(tuple(int(b) + 1 for b in row), float(np.prod(p)), tuple(map(float, p)),
                    tuple(float(i) for i in range(len(row))))
            for row, p in zip(best, scores)]


def _presence(outputs: np.ndarray, settings: DecodingSettings) -> list[Decoded]:
    """``(N, C)`` logits, one sigmoid per symbol: the set of symbols present."""
    probs = 1.0 / (1.0 + np.exp(-outputs[:, 1:].astype(np.float64)))
    results = []
    for p in probs:
        present = np.flatnonzero(p >= settings.threshold)
        exact = np.where(p >= settings.threshold, p, 1.0 - p)  # P(this exact set), independent
        results.append(Decoded(tuple(int(i) + 1 for i in present), float(np.prod(exact)),
                               tuple(float(p[i]) for i in present)))
    return results


def _heatmap(outputs: np.ndarray, settings: DecodingSettings) -> list[Decoded]:
    """``(N, C, h, w)`` probabilities of a character centre at each output pixel."""
    return [decode_heatmap(maps.astype(np.float64), settings.threshold, settings.length)
            for maps in outputs]


@dataclass(frozen=True)
class Decoder:
    """A decoder, whether it reads order (a string) and whether it has a tuned threshold."""

    name: str
    decode: Callable[[np.ndarray, DecodingSettings], list[Decoded]]
    ordered: bool = True
    thresholded: bool = False

    def __call__(self, outputs: np.ndarray, settings: DecodingSettings) -> list[Decoded]:
        return self.decode(outputs, settings)


DECODERS = {d.name: d for d in (
    Decoder("ctc", _ctc),
    Decoder("positions", _positions),
    Decoder("presence", _presence, ordered=False, thresholded=True),
    Decoder("heatmap", _heatmap, thresholded=True),
)}


def get_decoder(name: str) -> Decoder:
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r} (known: {', '.join(sorted(DECODERS))})")
    return DECODERS[name]
