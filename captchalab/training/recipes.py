"""``train``: the one entry to training, whichever recipe the settings ask for.

The default recipe trains one model. ``pretrain`` first trains on a synthetic scheme
(cached) and fine-tunes from it; ``restarts`` runs seed 002's staged restarts;
``unlabelled`` self-trains on confident readings of unlabelled images. ``distill`` trains a
smaller student on a teacher's soft outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from captchalab.data import Sample, split_samples
from captchalab.runtime.model_file import ModelFileError, load_model_file, read_card
from captchalab.training.config import TrainConfig
from captchalab.training.distillation import check_teacher
from captchalab.training.pretrain import pretrain
from captchalab.training.restarts import train_with_restarts
from captchalab.training.self_training import pseudo_labels, self_train, unlabelled_images
from captchalab.training.trainer import DataSource, Trainer, TrainResult, read_training_folder


def train(data_dir: str | Path | None, out_dir: str | Path, config: TrainConfig | None = None,
          log: Callable[[str], None] = print, show_progress: bool = True,
          split: tuple[list[Sample], list[Sample]] | None = None) -> TrainResult:
    """Train a recognizer on a labelled folder (or on ``config.scheme`` with no folder);
    writes model.safetensors, metrics.jsonl, curves.png, summary.json and a checkpoint.

    ``split`` fixes the training and validation samples (of that folder) instead of
    ``config.val_split``: an audit trains on subsets against one validation set.
    """
    config = (config or TrainConfig()).validate(has_data=data_dir is not None)
    if config.pretrain:
        start = pretrain(data_dir, config.pretrain, config, log, show_progress, split=split)
        config = replace(config, init=str(start), pretrain=None)
    if config.unlabelled:
        return self_train(data_dir, out_dir, config, log, show_progress, split).result
    if config.restarts:
        return train_with_restarts(data_dir, out_dir, config, log, show_progress).result
    result = Trainer(data_dir, out_dir, config, log, show_progress, split).run()
    return with_few_labels_tip(result) if data_dir is not None else result


FEW_LABELS = 300  # a string reader trained on fewer images is told about self-training
TIP_BELOW = 0.99  # ... unless it already reads this share of its validation images


def with_few_labels_tip(result: TrainResult) -> TrainResult:
    """A model that reads strings, trained on few labelled images and not yet reading nearly
    every validation image, gets a note: unlabelled captchas of the same scheme are free,
    and self-training on them is the cheapest way up from there."""
    if result.reading is None or not result.reading.ordered or not result.metrics:
        return result
    count = read_card(result.model_path).data.train_count
    if count >= FEW_LABELS or result.reading.headline(result.metrics) >= TIP_BELOW:
        return result
    tip = (f"tip: {count} labelled training images are few; unlabelled captchas of the same "
           "site help most here: add `--unlabelled DIR` (a folder of them) to self-train on "
           "its confident readings")
    return replace(result, notes=[*result.notes, tip])


def distill(teacher: str | Path, data: DataSource, out_dir: str | Path,
            config: TrainConfig | None = None, unlabelled: str | Path | None = None,
            log: Callable[[str], None] = print, show_progress: bool = True) -> TrainResult:
    """Train a student of the ``teacher`` model file on the labelled ``data`` (plus the
    teacher's readings of ``unlabelled`` images read with confidence >=
    ``config.pseudo_threshold``) into ``out_dir``. The student keeps the teacher's family,
    preprocessing and alphabet; ``config`` sets its size (``width_multiplier``, 0.5 in the
    default config), the recipe and ``distill_weight``."""
    from captchalab.runtime.recognizer import Recognizer

    source = load_model_file(teacher)
    check_teacher(source, teacher)
    config = replace(config or TrainConfig(width_multiplier=0.5), teacher=str(teacher),
                     model=source.card.family, alphabet=source.card.alphabet,
                     case_insensitive=source.card.data.case_insensitive)
    config.validate(has_data=True)
    folder = read_training_folder(data, config, log)
    train, val = split_samples(folder.samples, config.val_split, config.seed)
    if not val:
        raise ModelFileError(f"{folder.root}: too few images to hold out validation images")
    if unlabelled is not None:
        images, unreadable = unlabelled_images(str(unlabelled))
        pseudo = pseudo_labels(Recognizer.load(teacher), images, config.pseudo_threshold,
                               sorted({len(s.label) for s in train}))
        log(f"the teacher reads {len(pseudo)} of {len(images)} unlabelled images with "
            f"confidence >= {config.pseudo_threshold:g}"
            + (f" ({unreadable} unreadable, skipped)" if unreadable else ""))
        train = train + pseudo
    return Trainer(data, out_dir, config, log, show_progress, split=(train, val)).run()
