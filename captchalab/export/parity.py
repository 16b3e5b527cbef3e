"""Parity: does the exported model read a labelled folder exactly as the source model does?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

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
                 progress: Callable[[int, int], None] | None = None) -> ParityReport:
    """Read every image of ``data_dir`` with both recognizers (the same preprocessing, so
    the same pixels); ``progress(done, total)`` follows both readings."""
    if reference.preprocessing != exported.preprocessing:
        raise ValueError(f"{exported.path}: its preprocessing differs from {reference.path}'s")

    def half(offset: int) -> Callable[[int, int], None] | None:
        return None if progress is None else (
            lambda done, total: progress(offset * total + done, 2 * total))

    constraints = exported.card.constraints  # the export's defaults apply to both readings
    ours = reference.read_folder(data_dir, batch_size, skip_bad=skip_bad, progress=half(0),
                                 constraints=constraints)
    theirs = exported.read_folder(data_dir, batch_size, skip_bad=skip_bad, progress=half(1),
                                  constraints=constraints)
    same, right_ref, right_exp, worst, differing = 0, 0, 0, 0.0, []
    for sample, a, b in zip(ours.samples, ours.predictions, theirs.predictions):
        if a.characters == b.characters:
            same += 1
        elif len(differing) < 10:
            differing.append(sample.path.name)
        right_ref += reference.reading.is_right(sample.label, a.characters)
        right_exp += exported.reading.is_right(sample.label, b.characters)
        worst = max(worst, _confidence_gap(a, b))
    n = max(len(ours.samples), 1)
    return ParityReport(len(ours.samples), same / n, worst, right_ref / n, right_exp / n,
                        differing)
