"""Decoders by name: network outputs (numpy) -> :class:`Decoded`, one per image.

A model family names its decoder; the same decoder serves training-time validation, the
``Recognizer`` and any other runtime, so every place reads outputs the same way. A decoder
also knows what kind of reading it gives (:class:`Reading`): a string, or only the set of
symbols present (multilabel). That kind decides the metrics, which one ranks models, when
a reading is right and how it is shown, so no caller branches on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from captchalab.runtime import ctc
from captchalab.runtime.decoded import Decoded, DecodingSettings
from captchalab.runtime.heatmap import decode_heatmap
from captchalab.runtime.metrics import set_metrics, text_metrics

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.1, 0.91, 0.05))  # tuning grid


def _ctc(outputs: np.ndarray, settings: DecodingSettings) -> list[Decoded]:
    """``(N, T, C)`` log-probabilities, blank = 0."""
    return ctc.decode_batch(outputs, settings.method, settings.beam_width, settings.lengths)


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
    most = None if settings.lengths is None else settings.lengths[1]
    return [decode_heatmap(maps.astype(np.float64), settings.threshold, most)
            for maps in outputs]


@dataclass(frozen=True)
class Reading:
    """What a decoder's readings are: strings (``ordered``), or sets of symbols present."""

    ordered: bool
    headline_metric: str  # the metric models are ranked by
    char_metric: str  # the per-character (or per-label) metric shown beside it

    def metrics(self, truths: Sequence[str], readings: Sequence[str],
                alphabet: Sequence[str]) -> dict:
        """Text metrics for strings; exact-set and per-label accuracy for sets."""
        if self.ordered:
            return text_metrics(truths, readings)
        return set_metrics(truths, readings, alphabet)

    def headline(self, metrics: dict) -> float:
        """The one number models are ranked by: whole-captcha (or exact-set) accuracy."""
        return metrics.get(self.headline_metric, 0.0)

    def is_right(self, truth: str, reading: str) -> bool:
        return truth == reading if self.ordered else set(truth) == set(reading)

    def describe(self, metrics: dict) -> str:
        """One line for validation or evaluation metrics."""
        if self.ordered:
            return (f"{metrics['sequence_accuracy']:.2%} of captchas, "
                    f"{metrics['char_accuracy']:.2%} of characters")
        return (f"{metrics['exact_set_accuracy']:.2%} exact character sets, "
                f"{metrics['per_label_accuracy']:.2%} of presence labels")

    def as_dict(self, characters: str, confidence: float,
                char_confidences: Sequence[float]) -> dict:
        """A reading as JSON: ``text`` with per-character confidences, or each present
        symbol with its probability and ``"order": "unknown"``."""
        if self.ordered:
            return {"text": characters, "confidence": confidence,
                    "char_confidences": list(char_confidences)}
        return {"characters": dict(zip(characters, char_confidences)),
                "confidence": confidence, "order": "unknown"}


STRINGS = Reading(True, "sequence_accuracy", "char_accuracy")
SETS = Reading(False, "exact_set_accuracy", "per_label_accuracy")


def headline(metrics: dict) -> float:
    """The ranking figure of metrics of either kind of reading (whichever they hold)."""
    return STRINGS.headline(metrics) if STRINGS.headline_metric in metrics else \
        SETS.headline(metrics)


@dataclass(frozen=True)
class Decoder:
    """A decoder, the kind of reading it gives and whether it has a tuned threshold."""

    name: str
    decode: Callable[[np.ndarray, DecodingSettings], list[Decoded]]
    reading: Reading = STRINGS
    thresholded: bool = False

    @property
    def ordered(self) -> bool:
        return self.reading.ordered

    def __call__(self, outputs: np.ndarray, settings: DecodingSettings) -> list[Decoded]:
        return self.decode(outputs, settings)


DECODERS = {d.name: d for d in (
    Decoder("ctc", _ctc),
    Decoder("positions", _positions),
    Decoder("presence", _presence, reading=SETS, thresholded=True),
    Decoder("heatmap", _heatmap, thresholded=True),
)}


def get_decoder(name: str) -> Decoder:
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r} (known: {', '.join(sorted(DECODERS))})")
    return DECODERS[name]
