"""Character-centre heatmaps -> text (seed 002), in numpy: find peaks, drop duplicates, read
them left to right."""

from __future__ import annotations

import numpy as np

from captchalab.runtime.decoded import Decoded

MIN_DISTANCE = 2.0  # output columns; closer peaks are one character seen twice


def local_maxima(maps: np.ndarray, threshold: float) -> list[tuple[float, int, int, int]]:
    """``(score, symbol, row, column)`` of every point that is at least as high as its eight
    neighbours in its own map and at least ``threshold``; ``maps`` is ``(C, h, w)``."""
    padded = np.pad(maps, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    h, w = maps.shape[1:]
    neighbours = np.stack([padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    peaks = (maps >= neighbours.max(axis=0)) & (maps >= threshold)
    symbols, rows, columns = np.nonzero(peaks)
    return [(float(maps[s, r, c]), int(s), int(r), int(c))
            for s, r, c in zip(symbols, rows, columns)]


def decode_heatmap(maps: np.ndarray, threshold: float = 0.5, length: int | None = None,
                   min_distance: float = MIN_DISTANCE) -> Decoded:
    """One image's ``(C, h, w)`` centre probabilities -> symbols ordered by column.

    Peaks are taken strongest first; one closer than ``min_distance`` columns to a kept peak
    (of any symbol) is a duplicate. With ``length`` known, only that many of the strongest
    survivors are read. Map 0 (the CTC blank's slot) is never read.
    """
    candidates = sorted(local_maxima(maps[1:], threshold), reverse=True)
    kept: list[tuple[float, int, int, int]] = []
    for peak in candidates:
        if all(abs(peak[3] - other[3]) >= min_distance for other in kept):
            kept.append(peak)
        if length is not None and len(kept) == length:
            break
    kept.sort(key=lambda peak: peak[3])
    scores = tuple(score for score, *_ in kept)
    return Decoded(labels=tuple(symbol + 1 for _, symbol, _, _ in kept),
                   confidence=float(np.prod(scores)) if scores else 0.0,
                   char_confidences=scores,
                   positions=tuple(float(column) for *_, column in kept))
