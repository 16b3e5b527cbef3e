"""``evaluate``: a model file against a labelled folder, with an optional report of mistakes."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

from captchalab.data import read_labelled_folder
from captchalab.data.preprocess import open_image
from captchalab.evaluation.metrics import is_right, reading_metrics
from captchalab.fileio import atomic_write_bytes, atomic_write_text
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.recognizer import Prediction, Recognizer
from captchalab.training.progress import ProgressReporter

GALLERY_LIMIT = 48


@dataclass
class Evaluation:
    metrics: dict
    paths: list[Path]
    truths: list[str]
    predictions: list[Prediction]

    def mistakes(self) -> list[tuple[Path, str, Prediction]]:
        """Wrong readings, the most confident first (the most surprising mistakes)."""
        wrong = [(p, t, q) for p, t, q in zip(self.paths, self.truths, self.predictions)
                 if not is_right(t, q.characters, q.ordered)]
        return sorted(wrong, key=lambda row: -row[2].confidence)


def evaluate(recognizer: Recognizer, data_dir: str | Path, batch_size: int = 64,
             decoding: DecodingSettings | None = None, skip_bad: bool = False,
             show_progress: bool = True) -> Evaluation:
    """Sequence/character accuracy, CER, count and images per second on a labelled folder."""
    case_insensitive = recognizer.metadata.get("data", {}).get("case_insensitive", False)
    folder = read_labelled_folder(data_dir, case_insensitive=case_insensitive)
    folder.raise_if_bad(skip_bad)
    paths = [s.path for s in folder.samples]
    predictions: list[Prediction] = []
    started = time.perf_counter()
    with ProgressReporter(show_progress).task("evaluating", len(paths)) as advance:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            predictions.extend(recognizer.predict(chunk, batch_size, decoding))
            for _ in chunk:
                advance()
    seconds = time.perf_counter() - started
    truths = folder.labels
    metrics = reading_metrics(truths, [p.characters for p in predictions], recognizer.ordered,
                              recognizer.alphabet.symbols)
    metrics["images_per_second"] = round(len(paths) / seconds, 1) if seconds > 0 else 0.0
    metrics["skipped"] = len(folder.bad)
    return Evaluation(metrics, paths, truths, predictions)


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
    from captchalab.evaluation.reporting import png_bytes, pyplot

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
