"""Where a model goes wrong (seed 000): its most wrong and most right readings, and which
characters it takes for which."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from captchalab.evaluation.evaluate import Evaluation, gallery
from captchalab.evaluation.metrics import align, is_right
from captchalab.fileio import atomic_write_bytes, atomic_write_text

SHOWN = 16  # images per gallery
MISSING = "∅"  # a character missing from the reading, or read in excess


def character_confusions(truths: list[str], readings: list[str]) -> Counter:
    """(true, read) character counts over least-edit alignments, right ones included."""
    counts: Counter = Counter()
    for truth, reading in zip(truths, readings):
        counts.update((t or MISSING, r or MISSING) for t, r in align(truth, reading))
    return counts


def ranked(evaluation: Evaluation) -> tuple[list, list]:
    """The most wrong readings (wrong, and the model most sure of them) and the most right
    ones (right, and most sure), ``SHOWN`` of each: seed 000's highest and lowest losses."""
    rows = zip(evaluation.paths, evaluation.truths, evaluation.predictions)
    right = [row for row in rows if is_right(row[1], row[2].characters, row[2].ordered)]
    return (evaluation.mistakes()[:SHOWN],
            sorted(right, key=lambda row: -row[2].confidence)[:SHOWN])


def error_analysis(evaluation: Evaluation) -> dict:
    """The most wrong and most right readings, and the most frequent character confusions
    (for families that read order)."""
    most_wrong, most_right = ranked(evaluation)
    ordered = all(p.ordered for p in evaluation.predictions)
    report = {"metrics": evaluation.metrics, "most_wrong": [_row(r) for r in most_wrong],
              "most_right": [_row(r) for r in most_right]}
    if ordered:
        counts = character_confusions(evaluation.truths,
                                      [p.characters for p in evaluation.predictions])
        report["confusions"] = [{"true": t, "read": r, "count": n}
                                for (t, r), n in counts.most_common() if t != r]
    return report


def _row(row) -> dict:
    path, truth, prediction = row
    return {"file": str(path), "truth": truth, "reading": prediction.characters,
            "confidence": round(prediction.confidence, 4)}


def confusion_figure(truths: list[str], readings: list[str], alphabet: str) -> bytes:
    """Row: true character, column: read character; counts of each pair, log colour scale."""
    from captchalab.evaluation.reporting import png_bytes, pyplot

    symbols = list(alphabet) + [MISSING]
    index = {s: i for i, s in enumerate(symbols)}
    matrix = np.zeros((len(symbols), len(symbols)), dtype=np.int64)
    for (truth, read), count in character_confusions(truths, readings).items():
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
    report = error_analysis(evaluation)
    most_wrong, most_right = ranked(evaluation)
    atomic_write_bytes(out / "most_wrong.png", gallery(most_wrong, "firebrick", "no mistakes"))
    atomic_write_bytes(out / "most_right.png",
                       gallery(most_right, "darkgreen", "nothing read right"))
    if "confusions" in report:
        atomic_write_bytes(out / "confusion.png", confusion_figure(
            evaluation.truths, [p.characters for p in evaluation.predictions], alphabet))
    atomic_write_text(out / "errors.json", json.dumps(report, indent=2, ensure_ascii=False)
                      + "\n")
    return out
