"""What every decoder returns, and the settings that steer decoding (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decoded:
    """Decoded symbols (1-based class indices), P(reading), and a confidence per symbol.

    ``positions`` is where each symbol was found along the model's output (frames for CTC,
    output-map columns for heatmaps), empty when a family has no notion of position.
    """

    labels: tuple[int, ...]
    confidence: float
    char_confidences: tuple[float, ...]
    positions: tuple[float, ...] = ()


@dataclass(frozen=True)
class DecodingSettings:
    """How network outputs become text; stored in the model file, overridable per call.

    ``method`` and ``beam_width`` steer CTC decoding; ``threshold`` is the detection threshold
    of the heatmap and multilabel families (tuned on the validation set by ``train``);
    ``length`` is set when every training label had the same length; ``bounds`` (min, max)
    is a length constraint asked for at prediction time, which replaces it.
    """

    method: str = "beam"
    beam_width: int = 8
    length: int | None = None
    threshold: float = 0.5
    bounds: tuple[int, int] | None = None

    @property
    def lengths(self) -> tuple[int, int] | None:
        """The (min, max) length a reading must have, if any."""
        if self.bounds is not None:
            return self.bounds
        return None if self.length is None else (self.length, self.length)
