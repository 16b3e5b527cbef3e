"""Parity: does the exported model read a labelled folder exactly as the source model does?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from captchalab.data import read_labelled_folder
from captchalab.evaluation.metrics import is_right
from captchalab.runtime.recognizer import Prediction, Recognizer

PARITY_TARGET = 0.999  # share of images whose reading must agree
CONFIDENCE_TOLERANCE = 1e-4  # largest allowed confidence difference (float32 export)


@dataclass(frozen=True)
class ParityReport:
    images: int
    same_reading: float  # share of images read identically
    max_confidence_diff: float  # over the whole reading and every character
    reference_accuracy: float  # whole-captcha accuracy of each model on the labels
    exported_accuracy: float
    disagreements: list[str]  # file names where the readings differ (first few)

    def passed(self, tolerance: float = CONFIDENCE_TOLERANCE) -> bool:
        return self.same_reading >= PARITY_TARGET and self.max_confidence_diff <= tolerance

    def to_dict(self) -> dict:
        return asdict(self)


def _confidence_gap(a: Prediction, b: Prediction) -> float:
    gaps = [abs(a.confidence - b.confidence)]
    if len(a.char_confidences) == len(b.char_confidences):
        gaps += [abs(x - y) for x, y in zip(a.char_confidences, b.char_confidences)]
    return max(gaps)


def check_parity(reference: Recognizer, exported: Recognizer, data_dir: str | Path,
                 batch_size: int = 64, skip_bad: bool = True,
                 advance: Callable[[], None] | None = None) -> ParityReport:
    """Read every image of ``data_dir`` with both recognizers, from the same pixels;
    ``advance`` is called once per image read."""
    if reference.preprocessing != exported.preprocessing:
        raise ValueError(f"{exported.path}: its preprocessing differs from {reference.path}'s")
    case_insensitive = reference.metadata.get("data", {}).get("case_insensitive", False)
    folder = read_labelled_folder(data_dir, case_insensitive=case_insensitive)
    folder.raise_if_bad(skip_bad)
    same, right_ref, right_exp, worst, differing = 0, 0, 0, 0.0, []
    for start in range(0, len(folder.samples), batch_size):
        chunk = folder.samples[start : start + batch_size]
        pixels = np.stack([reference.preprocessing.load(s.path) for s in chunk])
        for sample, a, b in zip(chunk, reference.predict_pixels(pixels),
                                exported.predict_pixels(pixels)):
            if a.characters == b.characters:
                same += 1
            elif len(differing) < 10:
                differing.append(sample.path.name)
            right_ref += is_right(sample.label, a.characters, reference.ordered)
            right_exp += is_right(sample.label, b.characters, exported.ordered)
            worst = max(worst, _confidence_gap(a, b))
            if advance:
                advance()
    n = max(len(folder.samples), 1)
    return ParityReport(len(folder.samples), same / n, worst, right_ref / n, right_exp / n,
                        differing)
