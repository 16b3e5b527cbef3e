"""Self-training (seed 002): read unlabelled captchas with the model, add the readings it is
sure of to the training set as labels, retrain, and repeat.

Seed 002 saw errors accumulate: a wrong pseudo-label teaches the next model the same
mistake. Here every round is checked against held-out images that were labelled by people
and never pseudo-labelled; the rounds stop as soon as that validation accuracy drops, and
the best round's model is the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from captchalab.data import IMAGE_SUFFIXES, DatasetError, Sample, split_samples
from captchalab.data.preprocess import ImageError, open_image
from captchalab.fileio import atomic_write_text
from captchalab.models import family_class
from captchalab.reporting.progress import ProgressReporter
from captchalab.runtime import ImageFailure, Recognizer
from captchalab.runtime.model_file import ModelFileError
from captchalab.training.config import TrainConfig
from captchalab.training.data import FolderData, PixelCache
from captchalab.training.distributed import refuse_under_torchrun
from captchalab.training.trainer import (
    MODEL_FILE,
    Trainer,
    TrainResult,
    balanced_folders,
    copy_run,
    read_training_folder,
)

REPORT_FILE = "self_training.json"


@dataclass
class SelfTrainingResult:
    result: TrainResult  # the best round's, with its files copied into the output folder
    best_round: int
    report: dict


def unlabelled_images(source: str | Path | Sequence[Path]
                      ) -> tuple[list[tuple[Path, tuple[int, int]]], int]:
    """Every readable image of ``source`` (a folder, or a list of image files) with its size,
    and how many files were unreadable."""
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.is_dir():
            raise DatasetError(f"{root}: not a folder of images")
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        where = str(root)
    else:
        paths, where = list(source), "the unlabelled images"
    images, unreadable = [], 0
    for path in paths:
        try:
            images.append((path, open_image(path).size))
        except ImageError:
            unreadable += 1
    if not images:
        raise DatasetError(f"{where}: no readable images to self-train on")
    return images, unreadable


def pseudo_labels(recognizer: Recognizer, images: list[tuple[Path, tuple[int, int]]],
                  threshold: float, lengths: list[int]) -> list[Sample]:
    """The images the model reads with P(reading) >= ``threshold``, labelled by its reading;
    a reading of a length never seen in the labelled training data is left out."""
    predictions = recognizer.predict([path for path, _ in images], batch_size=64,
                                     errors="return")
    return [Sample(path, p.text, size) for (path, size), p in zip(images, predictions)
            if not isinstance(p, ImageFailure)
            if p.confidence >= threshold and len(p.text) in lengths]


def next_round(accuracies: list[float]) -> tuple[bool, int]:
    """``(go on, best round)`` after the rounds so far: stop as soon as the last round's
    validation accuracy is below the best before it. The best round has the highest
    accuracy; a tie goes on and goes to the later round, which learnt from more
    pseudo-labels. With a few validation images ties are the rule, and this choice reads
    best (``benchmarks/round_choice.py``: against the earlier round and the lower loss)."""
    best = max(range(len(accuracies)), key=lambda r: (accuracies[r], r))
    dropped = len(accuracies) > 1 and accuracies[-1] < max(accuracies[:-1])
    return not dropped, best


def self_train(
    data_dir: str | Path, out_dir: str | Path, config: TrainConfig,
    log: Callable[[str], None] = print, show_progress: bool = True,
    split: tuple[list[Sample], list[Sample]] | None = None,
    unlabelled: Sequence[Path] | None = None,
) -> SelfTrainingResult:
    """Round 0 trains on the labelled folder; each further round retrains (same recipe,
    same seed) on it plus the previous round's confident readings of ``config.unlabelled``
    (at most ``config.self_training_rounds`` rounds, readings with P >=
    ``config.pseudo_threshold``). Writes ``OUT/round-N/`` per round, the best round's model
    into ``OUT`` and ``self_training.json``. ``split`` fixes the labelled training and
    validation samples instead of ``config.val_split``; ``unlabelled`` gives the unlabelled
    image files instead of ``config.unlabelled``'s folder. Each image is decoded once."""
    refuse_under_torchrun("self-training (`unlabelled`)")
    config.validate(has_data=True)
    out = Path(out_dir)
    existing = out / MODEL_FILE
    if existing.exists() and not config.overwrite:
        raise ModelFileError(f"{existing}: already exists; pass `overwrite` to replace it")
    folder = read_training_folder(data_dir, config, log)
    train, val = split or split_samples(folder.samples, config.val_split, config.seed)
    if not val:
        raise ValueError(f"{data_dir}: too few images to hold out validation images")
    train = balanced_folders(train, data_dir, config, log)  # the labelled folders, as train's
    if unlabelled is None and not config.unlabelled:
        raise ValueError("self-training needs unlabelled images (`unlabelled`)")
    images, unreadable = unlabelled_images(unlabelled if unlabelled is not None
                                           else config.unlabelled)
    log(f"{len(images)} unlabelled images" + (f" ({unreadable} unreadable, skipped)"
                                              if unreadable else ""))
    threshold, cache = config.pseudo_threshold, PixelCache()
    # each round trains one schedule: the rounds are its chain
    run_config = replace(config, unlabelled=None, cycles=config.cycles or 1)
    needs_centres = family_class(config.model).needs_centres
    lengths = sorted({len(s.label) for s in train})
    results: list[TrainResult] = []
    history: list[dict] = []
    pseudo: list[Sample] = []
    for round_index in range(config.self_training_rounds + 1):
        if round_index:
            recognizer = Recognizer.load(results[-1].model_path)
            pseudo = pseudo_labels(recognizer, images, threshold, lengths)
            log(f"round {round_index}: {len(pseudo)} of {len(images)} unlabelled images read "
                f"with confidence >= {threshold}")
        data = FolderData.load(folder, train + pseudo, val, run_config,
                               ProgressReporter(show_progress), needs_centres=needs_centres,
                               cache=cache)
        results.append(Trainer(data_dir, out / f"round-{round_index}", run_config,
                               lambda line, r=round_index: log(f"round {r}: {line}"),
                               show_progress, data=data).run())
        accuracy = results[-1].reading.headline(results[-1].metrics)
        history.append({"round": round_index, "pseudo_labelled": len(pseudo),
                        "val_accuracy": accuracy, "metrics": results[-1].metrics})
        go_on, best = next_round([h["val_accuracy"] for h in history])
        log(f"round {round_index}: validation accuracy {accuracy:.2%}"
            + ("" if go_on else f", below round {best}'s: stopping"))
        if not go_on:
            break
    copy_run(out / f"round-{best}", out)
    report = {"threshold": threshold, "rounds_asked": config.self_training_rounds,
              "unlabelled": len(images), "unreadable": unreadable, "rounds": history,
              "best_round": best, "dropped": not go_on}
    atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    tied = sum(h["val_accuracy"] == history[best]["val_accuracy"] for h in history) > 1
    note = ("self-training: " + ", ".join(
        f"round {r['round']} {r['val_accuracy']:.2%} ({r['pseudo_labelled']} pseudo-labels)"
        for r in history) + f"; round {best} kept"
        + (" (tied on accuracy: the later round)" if tied else ""))
    result = replace(results[best], model_path=out / MODEL_FILE,
                     notes=[*results[best].notes, note])
    return SelfTrainingResult(result, best, report)
