"""Character centres from string labels alone, via a trained CTC model (seed 002's missing
piece): align each *known* label to the model's output frames and take each character's
frame-weighted centre. The heatmap family can then train on folders with string labels only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captchalab.data import DatasetError, read_labelled_folder
from captchalab.data.annotations import ANNOTATIONS_FILE, write_centres
from captchalab.runtime import ctc
from captchalab.runtime.artifact import ModelFileError
from captchalab.runtime.recognizer import Recognizer


@dataclass(frozen=True)
class CentreAnnotation:
    path: Path
    written: int
    skipped: int  # labels longer than the model's output has frames
    mean_label_probability: float  # how sure the model is of the labels it aligned


def frame_centres(log_probs: np.ndarray, labels: list[int]) -> list[float]:
    """Each label symbol's centre in output frames (Viterbi span, probability-weighted)."""
    spans = ctc.align(log_probs, labels)
    return [ctc.centre_of(log_probs[:, label], span) for label, span in zip(labels, spans)]


def annotate_centres(recognizer: Recognizer, data_dir: str | Path, out: str | Path | None = None,
                     overwrite: bool = False, batch_size: int = 64, skip_bad: bool = False,
                     advance: Callable[[], None] | None = None) -> CentreAnnotation:
    """Write ``annotations.jsonl`` (x from the alignment, y at mid-height) for ``data_dir``."""
    if recognizer.decoder.name != "ctc":
        raise ModelFileError(f"{recognizer.path}: annotate-centres needs a CTC model (family "
                             f"crnn), this one is {recognizer.family}")
    data_dir = Path(data_dir)
    out = Path(out) if out else data_dir / ANNOTATIONS_FILE
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it")
    case_insensitive = recognizer.metadata.get("data", {}).get("case_insensitive", False)
    folder = read_labelled_folder(data_dir, case_insensitive=case_insensitive)
    folder.raise_if_bad(skip_bad)
    unknown = sorted({c for s in folder.samples for c in recognizer.alphabet.unknown(s.label)})
    if unknown:
        raise DatasetError(f"{data_dir}: labels use symbols the model cannot read: "
                           f"{''.join(unknown)!r}")
    preprocessing = recognizer.preprocessing
    rows, skipped, probabilities = [], 0, []
    for start in range(0, len(folder.samples), batch_size):
        chunk = folder.samples[start : start + batch_size]
        outputs = recognizer.outputs(np.stack([preprocessing.load(s.path) for s in chunk]))
        for sample, log_probs in zip(chunk, outputs.astype(np.float64)):
            labels = recognizer.alphabet.encode(sample.label)
            frames = len(log_probs)
            if advance:
                advance()
            if len(labels) > frames:
                skipped += 1
                continue
            width, height = sample.size
            columns_per_frame = width / frames
            centres = [[round((f + 0.5) * columns_per_frame, 2), round(height / 2, 2)]
                       for f in frame_centres(log_probs, labels)]
            rows.append({"file": sample.path.name, "label": sample.label, "centres": centres,
                         "source": "ctc-alignment"})
            probabilities.append(float(np.exp(ctc.sequence_log_prob(log_probs, labels))))
    write_centres(out, rows)
    return CentreAnnotation(out, len(rows), skipped,
                            float(np.mean(probabilities)) if probabilities else 0.0)
