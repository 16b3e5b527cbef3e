"""The general base model: the default family trained on the synthetic universe.

Every image of the universe (``captchalab.generators.universe``) is drawn by its own random
scheme, so the model learns to read captchas in general. It reads at zero labels
(``predict base``) and is where every crnn training starts (``train`` fine-tunes from it
unless ``--from-scratch``). Its input is 32 pixels high like the default recipe's on most
sets; any width works (the network reads columns), and inputs up to 47 pixels high
transfer unchanged.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path

from captchalab.fileio import atomic_write_bytes
from captchalab.generators.universe import universe_fonts
from captchalab.runtime.constraints import Constraints
from captchalab.runtime.model_file import (
    PACKAGED_BASE_MODEL,
    load_model_file,
    save_model_file,
)
from captchalab.training.config import (
    BASE_BATCH,
    BASE_EPOCH_IMAGES,
    BASE_EPOCHS,
    BASE_HEIGHT,
    TrainConfig,
)
from captchalab.training.trainer import CHECKPOINT_FILE, Trainer, resolve_device


def base_config(minutes: float | None = None, device: str = "auto", seed: int = 0,
                epochs: int = BASE_EPOCHS, epoch_images: int = BASE_EPOCH_IMAGES) -> TrainConfig:
    """The base model's run: the default crnn on the universe, one schedule of ``epochs``
    (annealed to fit ``minutes`` when given)."""
    return TrainConfig(scheme="universe", height=BASE_HEIGHT, batch_size=BASE_BATCH,
                       epochs=epochs, stream_epoch=epoch_images, stream_val=1024,
                       max_minutes=minutes, device=device, seed=seed, cycles=1,
                       from_scratch=True, log_epochs=True)


def train_base_model(out: str | Path, config: TrainConfig, log: Callable[[str], None] = print,
                     show_progress: bool = True, resume: bool = False) -> Path:
    """Train (or, with ``resume``, continue) the base model in ``out``; its model file, whose
    card says what it was trained on, how long, where and with which command."""
    out = Path(out)
    resume = resume and (out / CHECKPOINT_FILE).is_file()
    config = replace(config, resume=resume, overwrite=not resume)
    fonts = universe_fonts()
    device = str(resolve_device(config.device))
    log(f"base model: {config.epochs} epochs of {config.stream_epoch} fresh universe captchas "
        f"({len(fonts)} fonts) on {device}"
        + (f", at most {config.max_minutes:g} min" if config.max_minutes else "")
        + (", resuming" if resume else ""))
    started = time.monotonic()
    result = Trainer(None, out, config, log, show_progress).run()
    path = result.model_path
    model = load_model_file(path)
    card = model.card
    images = card.training.steps_run * config.batch_size
    about = {
        **card.about,
        "trained_on": "the synthetic universe: every image its own random scheme (fonts, "
                      "sizes, pages, colours, rotation, shear, overlap, warps, blur, noise), "
                      "3-8 digits and ASCII letters in both cases, 10% arithmetic questions",
        "fonts": [Path(f).name for f in fonts],
        "steps": card.training.steps_run, "images_seen": images,
        "minutes": round(card.training.minutes, 1),
        "hardware": _hardware(device),
        "date": date.today().isoformat(),
        "command": "captchalab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if Path(sys.argv[0]).name in ("captchalab", "__main__.py") else "train_base_model",
    }
    # zero-shot readings fold case (which case a style draws is a guess); callers may ask
    # for upper case, and fine-tuned models read as their labels are
    save_model_file(path, model.tensors, replace(card, about=about,
                                                 constraints=Constraints(case="lower")))
    accuracy = card.metrics.get("sequence_accuracy", 0.0)
    log(f"base model: {card.training.steps_run} steps, {images} images seen in "
        f"{(time.monotonic() - started) / 60:.1f} min this run ({card.training.minutes:.1f} "
        f"min in all); validation on fresh universe captchas {accuracy:.1%}")
    return path


def _hardware(device: str) -> str:
    """The machine that trained it, in words."""
    if device.startswith("cuda"):
        import torch

        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU: {os.cpu_count()} cores ({platform.machine()}, {platform.processor() or 'cpu'})"


def install_base_model(path: str | Path) -> Path:
    """Copy a trained base model into the package (where ``load("base")`` finds it)."""
    PACKAGED_BASE_MODEL.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(PACKAGED_BASE_MODEL, Path(path).read_bytes())


__all__ = ["base_config", "install_base_model", "train_base_model"]
