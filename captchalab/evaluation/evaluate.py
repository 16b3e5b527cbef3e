"""``evaluate``: a model file against a labelled folder, with an optional report of mistakes.

When labels use symbols the model cannot produce (trained on another alphabet), the
overall figure would read as a bare failure; the evaluation names those symbols and also
gives the metrics on the images whose labels the model can read.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from captchalab.data import Alphabet
from captchalab.data.preprocess import open_image
from captchalab.fileio import atomic_write_bytes, atomic_write_text
from captchalab.reporting.charts import png_bytes, pyplot
from captchalab.reporting.progress import ProgressReporter
from captchalab.runtime.constraints import Constraints
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.decoders import Reading
from captchalab.runtime.recognizer import Prediction, Recognizer

GALLERY_LIMIT = 48


@dataclass
class Evaluation:
    """A model's readings of a labelled folder, and their metrics."""

    metrics: dict
    paths: list[Path]
    truths: list[str]
    predictions: list[Prediction]
    reading: Reading
    unknown_symbols: str = ""  # label symbols outside the model's alphabet
    readable_metrics: dict | None = None  # on the images whose labels use none of them

    def mistakes(self) -> list[tuple[Path, str, Prediction]]:
        """Wrong readings, the most confident first (the most surprising mistakes)."""
        wrong = [(p, t, q) for p, t, q in zip(self.paths, self.truths, self.predictions)
                 if not self.reading.is_right(t, q.characters)]
        return sorted(wrong, key=lambda row: -row[2].confidence)

    def rights(self) -> list[tuple[Path, str, Prediction]]:
        """Right readings, the most confident first."""
        right = [(p, t, q) for p, t, q in zip(self.paths, self.truths, self.predictions)
                 if self.reading.is_right(t, q.characters)]
        return sorted(right, key=lambda row: -row[2].confidence)

    def to_dict(self) -> dict:
        """The metrics as JSON, with the unreadable symbols and the readable subset's
        metrics when there are any."""
        report = dict(self.metrics)
        if self.unknown_symbols:
            report["unknown_symbols"] = self.unknown_symbols
            report["readable"] = self.readable_metrics
        return report


def evaluate(recognizer: Recognizer, data_dir: str | Path, batch_size: int = 64,
             decoding: DecodingSettings | None = None, skip_bad: bool = False,
             show_progress: bool = True, constraints: Constraints | None = None) -> Evaluation:
    """Sequence/character accuracy (case-folded too), CER, count and images per second on
    a labelled folder, read under ``constraints`` if given."""
    with ProgressReporter(show_progress).task("evaluating", None) as advance:
        read = recognizer.read_folder(data_dir, batch_size, decoding, skip_bad,
                                      progress=lambda done, total: advance(to=done, total=total),
                                      constraints=constraints)
    reading, symbols = recognizer.reading, recognizer.alphabet.symbols
    truths, readings = read.truths, [p.characters for p in read.predictions]
    case = constraints.case if constraints else "as-trained"
    if case != "as-trained":  # readings come in that case: so do the labels they are held to
        truths = [t.lower() if case == "lower" else t.upper() for t in truths]
        symbols = "".join(dict.fromkeys(s.lower() if case == "lower" else s.upper()
                                        for s in symbols))
    metrics = reading.metrics(truths, readings, symbols)
    metrics["images_per_second"] = round(len(truths) / read.seconds, 1) if read.seconds else 0.0
    metrics["skipped"] = len(read.folder.bad)
    readable_alphabet = Alphabet(symbols)
    unknown = "".join(sorted({c for t in truths for c in readable_alphabet.unknown(t)}))
    readable = None
    if unknown:
        kept = [i for i, t in enumerate(truths) if not readable_alphabet.unknown(t)]
        readable = reading.metrics([truths[i] for i in kept], [readings[i] for i in kept],
                                   symbols)
    return Evaluation(metrics, [s.path for s in read.samples], truths, read.predictions,
                      reading, unknown, readable)


def write_report(evaluation: Evaluation, report_dir: str | Path) -> Path:
    """``errors.csv`` (every mistake) and ``errors.png`` (a gallery of the first ones)."""
    report_dir = Path(report_dir)
    mistakes = evaluation.mistakes()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "truth", "prediction", "confidence"])
    for path, truth, prediction in mistakes:
        writer.writerow([str(path), truth, prediction.characters, f"{prediction.confidence:.4f}"])
    atomic_write_text(report_dir / "errors.csv", buffer.getvalue())
    atomic_write_bytes(report_dir / "errors.png", gallery(mistakes[:GALLERY_LIMIT]))
    return report_dir


def gallery(rows: list[tuple[Path, str, Prediction]], color: str = "firebrick",
            empty: str = "no mistakes") -> bytes:
    """Images titled 'truth -> reading (confidence)', four to a line, as PNG bytes."""
    plt = pyplot()
    columns = 4
    count = max(len(rows), 1)
    lines = -(-count // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(columns * 3.2, lines * 1.4),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    if not rows:
        axes[0][0].text(0, 0.5, empty, fontsize=12)
    for axis, (path, truth, prediction) in zip(axes.flat, rows):
        axis.imshow(open_image(path).convert("RGB"))
        axis.set_title(f"{truth} -> {prediction.characters} ({prediction.confidence:.2f})",
                       fontsize=9, color=color)
    figure.tight_layout()
    return png_bytes(figure, dpi=90)
