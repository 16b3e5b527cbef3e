"""Character centres from string labels alone, via a trained CTC model (seed 002's missing
piece): align each *known* label to the model's output frames and take each character's
frame-weighted centre. The heatmap family can then train on folders with string labels only.

The model is any reader with ``align`` (a ``captchalab.runtime.Recognizer`` of a crnn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captchalab.data.annotations import ANNOTATIONS_FILE, write_centres
from captchalab.data.dataset import DatasetError, read_labelled_folder


@dataclass(frozen=True)
class CentreAnnotation:
    path: Path
    written: int
    skipped: int  # labels longer than the model's output has frames
    mean_label_probability: float  # how sure the model is of the labels it aligned


def annotate_centres(recognizer: Any, data_dir: str | Path, out: str | Path | None = None,
                     overwrite: bool = False, batch_size: int = 64, skip_bad: bool = False,
                     advance: Callable[[], None] | None = None) -> CentreAnnotation:
    """Write ``annotations.jsonl`` (x from the alignment, y at mid-height) for ``data_dir``
    with a CTC ``recognizer``'s alignment of each image's label."""
    recognizer.align([], [])  # refuses a model that cannot align, before reading the folder
    data_dir = Path(data_dir)
    out = Path(out) if out else data_dir / ANNOTATIONS_FILE
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass `overwrite` to replace it")
    folder = read_labelled_folder(data_dir,
                                  case_insensitive=recognizer.card.data.case_insensitive)
    folder.raise_if_bad(skip_bad)
    unknown = sorted({c for s in folder.samples for c in recognizer.alphabet.unknown(s.label)})
    if unknown:
        raise DatasetError(f"{data_dir}: labels use symbols the model cannot read: "
                           f"{''.join(unknown)!r}")
    rows, skipped, probabilities = [], 0, []
    for start in range(0, len(folder.samples), batch_size):
        chunk = folder.samples[start : start + batch_size]
        alignments = recognizer.align([s.path for s in chunk], [s.label for s in chunk],
                                      batch_size)
        for sample, alignment in zip(chunk, alignments):
            if advance:
                advance()
            if alignment is None:
                skipped += 1
                continue
            width, height = sample.size
            columns_per_frame = width / alignment.frames
            centres = [[round((f + 0.5) * columns_per_frame, 2), round(height / 2, 2)]
                       for f in alignment.centres]
            rows.append({"file": sample.path.name, "label": sample.label, "centres": centres,
                         "source": "ctc-alignment"})
            probabilities.append(alignment.probability)
    write_centres(out, rows)
    mean = sum(probabilities) / len(probabilities) if probabilities else 0.0
    return CentreAnnotation(out, len(rows), skipped, mean)
