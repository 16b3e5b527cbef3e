"""Where a model goes wrong (seed 000): its most wrong and most right readings, and which
characters it takes for which."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captchalab.evaluation.evaluate import Evaluation, gallery
from captchalab.fileio import atomic_write_bytes, atomic_write_text
from captchalab.runtime.metrics import align
from captchalab.runtime.recognizer import Prediction

SHOWN = 16  # images per gallery
MISSING = "∅"  # a character missing from the reading, or read in excess


def character_confusions(truths: list[str], readings: list[str]) -> Counter:
    """(true, read) character counts over least-edit alignments, right ones included."""
    counts: Counter = Counter()
    for truth, reading in zip(truths, readings):
        counts.update((t or MISSING, r or MISSING) for t, r in align(truth, reading))
    return counts


@dataclass
class ErrorAnalysis:
    """The most wrong readings (wrong, and the model most sure of them), the most right ones
    (right, and most sure): seed 000's highest and lowest losses; and the character
    confusions, for families that read order."""

    metrics: dict
    most_wrong: list[tuple[Path, str, Prediction]]
    most_right: list[tuple[Path, str, Prediction]]
    confusions: Counter | None

    def to_dict(self) -> dict:
        report = {"metrics": self.metrics, "most_wrong": [_row(r) for r in self.most_wrong],
                  "most_right": [_row(r) for r in self.most_right]}
        if self.confusions is not None:
            report["confusions"] = [{"true": t, "read": r, "count": n}
                                    for (t, r), n in self.confusions.most_common() if t != r]
        return report


def error_analysis(evaluation: Evaluation) -> ErrorAnalysis:
    confusions = character_confusions(
        evaluation.truths, [p.characters for p in evaluation.predictions]
    ) if evaluation.reading.ordered else None
    return ErrorAnalysis(evaluation.metrics, evaluation.mistakes()[:SHOWN],
                         evaluation.rights()[:SHOWN], confusions)


def _row(row: tuple[Path, str, Prediction]) -> dict:
    path, truth, prediction = row
    return {"file": str(path), "truth": truth, "reading": prediction.characters,
            "confidence": round(prediction.confidence, 4)}


def confusion_figure(confusions: Counter, alphabet: str) -> bytes:
    """Row: true character, column: read character; counts of each pair, log colour scale."""
    from captchalab.reporting.charts import png_bytes, pyplot

    symbols = list(alphabet) + [MISSING]
    index = {s: i for i, s in enumerate(symbols)}
    matrix = np.zeros((len(symbols), len(symbols)), dtype=np.int64)
    for (truth, read), count in confusions.items():
        if truth in index and read in index:
            matrix[index[truth], index[read]] += count
    plt = pyplot()
    size = max(4.0, 0.32 * len(symbols) + 1.5)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(np.log1p(matrix), cmap="viridis")
    axis.set_xticks(range(len(symbols)), symbols, fontsize=7)
    axis.set_yticks(range(len(symbols)), symbols, fontsize=7)
    axis.set_xlabel("read as")
    axis.set_ylabel("true character")
    for i, j in zip(*np.nonzero(matrix)):
        if i != j:
            axis.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                      color="white")
    figure.colorbar(image, ax=axis, label="log(1 + count)")
    axis.set_title("character confusions (off the diagonal: mistakes)")
    figure.tight_layout()
    return png_bytes(figure)


def write_error_analysis(evaluation: Evaluation, alphabet: str, out_dir: str | Path) -> Path:
    """``errors.json``, ``most_wrong.png``, ``most_right.png`` and (for families that read
    order) ``confusion.png`` in ``out_dir``, written atomically."""
    out = Path(out_dir)
    analysis = error_analysis(evaluation)
    atomic_write_bytes(out / "most_wrong.png",
                       gallery(analysis.most_wrong, "firebrick", "no mistakes"))
    atomic_write_bytes(out / "most_right.png",
                       gallery(analysis.most_right, "darkgreen", "nothing read right"))
    if analysis.confusions is not None:
        atomic_write_bytes(out / "confusion.png", confusion_figure(analysis.confusions, alphabet))
    atomic_write_text(out / "errors.json",
                      json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return out
