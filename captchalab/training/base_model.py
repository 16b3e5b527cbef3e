"""The general base model: the default family trained on the synthetic universe.

Every image of the universe (``captchalab.generators.universe``) is drawn by its own random
scheme, so the model learns to read captchas in general. It reads at zero labels
(``predict base``) and is where every crnn training starts (``train`` fine-tunes from it
unless ``--from-scratch``). Its input is 32 pixels high like the default recipe's on most
sets; any width works (the network reads columns), and inputs up to 47 pixels high
transfer unchanged.
"""

from __future__ import annotations

import json
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
from captchalab.generators.universe import UNIVERSE_VERSION, universe_fonts
from captchalab.runtime.constraints import Constraints
from captchalab.runtime.model_file import (
    PACKAGED_BASE_MODEL,
    ModelFileError,
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

CONTINUES_FILE = "continues.json"  # what a continued base had been trained on before
CONTINUE_RATE = 1e-3  # the peak learning rate of a run that continues a trained base


def base_config(minutes: float | None = None, device: str = "auto", seed: int = 0,
                epochs: int = BASE_EPOCHS, epoch_images: int = BASE_EPOCH_IMAGES,
                init: str | None = None, learning_rate: float | None = None) -> TrainConfig:
    """The base model's run: the default crnn on the universe, one schedule of ``epochs``
    (annealed to fit ``minutes`` when given). With ``init`` (a base model file, or
    ``base``) the run continues from its weights: a new schedule, peaking at
    :data:`CONTINUE_RATE` unless ``learning_rate`` says otherwise."""
    rate = learning_rate or (CONTINUE_RATE if init else TrainConfig.learning_rate)
    return TrainConfig(scheme="universe", height=BASE_HEIGHT, batch_size=BASE_BATCH,
                       epochs=epochs, stream_epoch=epoch_images, stream_val=1024,
                       max_minutes=minutes, device=device, seed=seed, cycles=1,
                       from_scratch=init is None, init=init, learning_rate=rate,
                       log_epochs=True)


def train_base_model(out: str | Path, config: TrainConfig, log: Callable[[str], None] = print,
                     show_progress: bool = True, resume: bool = False) -> Path:
    """Train (or, with ``resume``, continue) the base model in ``out``; its model file, whose
    card says what it was trained on, how long, where and with which command."""
    out = Path(out)
    resume = resume and (out / CHECKPOINT_FILE).is_file()
    config = replace(config, resume=resume, overwrite=not resume)
    fonts = universe_fonts()
    earlier = _earlier_training(out, config.init if not resume else None)
    device = str(resolve_device(config.device))
    log(f"base model: {config.epochs} epochs of {config.stream_epoch} fresh universe captchas "
        f"({len(fonts)} fonts) on {device}"
        + (f", at most {config.max_minutes:g} min" if config.max_minutes else "")
        + (", resuming" if resume else "")
        + (f", continuing {config.init} ({earlier['steps']} steps before)" if earlier else ""))
    started = time.monotonic()
    result = Trainer(None, out, config, log, show_progress).run()
    path = result.model_path
    model = load_model_file(path)
    card = model.card
    steps = card.training.steps_run + earlier.get("steps", 0)
    images = card.training.steps_run * config.batch_size + earlier.get("images_seen", 0)
    minutes = card.training.minutes + earlier.get("minutes", 0.0)
    about = {
        **{key: value for key, value in card.about.items() if key != "continued_from"},
        "trained_on": "the synthetic universe: every image its own random scheme (fonts, "
                      "sizes, pages, colours, a vivid colour per character, rotation, shear, "
                      "overlap, warps, blur, noise, a rain of short dashes), 3-8 digits and "
                      "ASCII letters in both cases, 10% arithmetic questions",
        "universe_version": UNIVERSE_VERSION,
        "fonts": [Path(f).name for f in fonts],
        "steps": steps, "images_seen": images, "minutes": round(minutes, 1),
        "hardware": _hardware(device),
        "date": date.today().isoformat(),
        "command": "captchalab " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if Path(sys.argv[0]).name in ("captchalab", "__main__.py") else "train_base_model",
        **({"continued_from": earlier} if earlier else {}),
    }
    # zero-shot readings fold case (which case a style draws is a guess); callers may ask
    # for upper case, and fine-tuned models read as their labels are
    save_model_file(path, model.tensors, replace(card, about=about,
                                                 constraints=Constraints(case="lower")))
    accuracy = card.metrics.get("sequence_accuracy", 0.0)
    log(f"base model: {steps} steps, {images} images seen; "
        f"{(time.monotonic() - started) / 60:.1f} min this run ({minutes:.1f} "
        f"min in all); validation on fresh universe captchas {accuracy:.1%}")
    return path


def _earlier_training(out: Path, init: str | None) -> dict:
    """What the base model a run continues had been trained on: its steps, images, minutes,
    hardware, date and command (counted in the new card as the run's first part). A new
    run reads it from ``init``'s card and keeps it in ``out``; a resumed one reads it there."""
    kept = out / CONTINUES_FILE
    if init is None:
        return json.loads(kept.read_text(encoding="utf-8")) if kept.is_file() else {}
    about = load_model_file(init).card.about
    if "steps" not in about:
        raise ModelFileError(f"{init}: not a base model (its card does not say how it was "
                             "trained); continue a model that `base-model` wrote")
    keys = ("steps", "images_seen", "minutes", "hardware", "date", "command")
    earlier = {key: about[key] for key in keys if key in about}
    earlier["universe_version"] = about.get("universe_version", 1)  # 1 did not say so
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(kept, json.dumps(earlier, indent=1).encode("utf-8"))
    return earlier


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
